use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = airgate::cli::Cli::parse();
    let code = match airgate::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("airgate: {error:#}");
            1
        }
    };
    std::process::exit(code);
}
