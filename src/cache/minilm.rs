//! The all-MiniLM-L6-v2 encoder, forward pass written out (BERT: post-LayerNorm, GELU(erf),
//! absolute positions), exact against sentence-transformers.
//!
//! Why not candle's `BertModel` (measured on 2 cores, 2-3x slower for short prompts): it spent
//! most of a short prompt in gemm repacking the transposed (out, in) weights on every call, in
//! thread hand-offs for ~150 tiny per-head matmuls, and in libm's scalar `erff`. Here weights
//! are packed once at load into 16-column panels streamed by a small register-blocked kernel
//! (AVX2+FMA through `pulp`, safe code), Q/K/V are one fused matmul, attention/softmax/
//! LayerNorm/GELU are plain loops, and a batch is *not padded*: every text's tokens are stacked
//! as rows of the same matmuls and only attention is per text, so a text's vector does not
//! depend on what it was batched with and no work is spent on padding.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};

use super::embedder::{DIMENSION, MAX_TOKENS};
use super::index::dot;

struct Dense {
    w: Packed,
}
struct Norm {
    g: Vec<f32>,
    b: Vec<f32>,
}
struct Layer {
    qkv: Dense,
    out: Dense,
    ln1: Norm,
    up: Dense,
    down: Dense,
    ln2: Norm,
}

pub(crate) struct Bert {
    /// (vocab, DIMENSION) row-major.
    word: Vec<f32>,
    /// Position embedding + token-type-0 embedding (types are always 0): one constant table,
    /// (MAX_TOKENS, DIMENSION).
    pos_type: Vec<f32>,
    emb_ln: Norm,
    layers: Vec<Layer>,
    heads: usize,
    eps: f32,
    max_pos: usize,
}

fn vec1(vb: &VarBuilder, name: &str, n: usize) -> candle_core::Result<Vec<f32>> {
    vb.get(n, name)?.to_vec1::<f32>()
}

/// torch Linear weights are (out, in); `w` here is the concatenation along out. Packed once
/// as (in, out) panels so the forward never transposes or repacks.
fn dense(w: &Tensor, b: Vec<f32>) -> candle_core::Result<Dense> {
    let (n, k) = w.dims2()?;
    let wt = w.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let w = Packed::new(&wt, k, n, b)
        .ok_or_else(|| candle_core::Error::Msg(format!("cannot pack a {n}x{k} matrix")))?;
    Ok(Dense { w })
}
fn linear(vb: VarBuilder, out_dims: usize, in_dims: usize) -> candle_core::Result<Dense> {
    dense(
        &vb.get((out_dims, in_dims), "weight")?,
        vec1(&vb, "bias", out_dims)?,
    )
}
/// Q, K and V as one (3h, h) matmul: one pass over the activations instead of three.
fn fused_qkv(vb: VarBuilder, h: usize) -> candle_core::Result<Dense> {
    let (q, k, v) = (vb.pp("query"), vb.pp("key"), vb.pp("value"));
    let w = Tensor::cat(
        &[
            q.get((h, h), "weight")?,
            k.get((h, h), "weight")?,
            v.get((h, h), "weight")?,
        ],
        0,
    )?;
    let mut b = vec1(&q, "bias", h)?;
    b.extend(vec1(&k, "bias", h)?);
    b.extend(vec1(&v, "bias", h)?);
    dense(&w, b)
}
fn norm(vb: VarBuilder, h: usize) -> candle_core::Result<Norm> {
    Ok(Norm {
        g: vec1(&vb, "weight", h)?,
        b: vec1(&vb, "bias", h)?,
    })
}

impl Bert {
    pub(crate) fn load(vb: VarBuilder, c: &Config) -> candle_core::Result<Bert> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = c.hidden_size;
        if h != DIMENSION
            || c.num_attention_heads == 0
            || !h.is_multiple_of(c.num_attention_heads)
            || c.hidden_act != HiddenAct::Gelu
            || !c.intermediate_size.is_multiple_of(PANEL)
            || c.type_vocab_size == 0
        {
            return Err(candle_core::Error::Msg(format!(
                "unsupported config: hidden {h}, heads {}, intermediate {}, act {:?}",
                c.num_attention_heads, c.intermediate_size, c.hidden_act
            )));
        }
        let e = vb.pp("embeddings");
        let word = e
            .get((c.vocab_size, h), "word_embeddings.weight")?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let max_pos = c.max_position_embeddings.min(MAX_TOKENS);
        let pos = e.get((c.max_position_embeddings, h), "position_embeddings.weight")?;
        let ty = e.get((c.type_vocab_size, h), "token_type_embeddings.weight")?;
        let pos_type = pos
            .narrow(0, 0, max_pos)?
            .broadcast_add(&ty.narrow(0, 0, 1)?)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let emb_ln = norm(e.pp("LayerNorm"), h)?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            layers.push(Layer {
                qkv: fused_qkv(l.pp("attention.self"), h)?,
                out: linear(l.pp("attention.output.dense"), h, h)?,
                ln1: norm(l.pp("attention.output.LayerNorm"), h)?,
                up: linear(l.pp("intermediate.dense"), c.intermediate_size, h)?,
                down: linear(l.pp("output.dense"), h, c.intermediate_size)?,
                ln2: norm(l.pp("output.LayerNorm"), h)?,
            });
        }
        Ok(Bert {
            word,
            pos_type,
            emb_ln,
            layers,
            heads: c.num_attention_heads,
            eps: c.layer_norm_eps as f32,
            max_pos,
        })
    }

    /// Embeds token sequences (unpadded). All texts' tokens are stacked as the rows of each
    /// matmul; attention is computed per text, which is exactly what the attention mask does
    /// in a padded batch, minus the padded rows.
    pub(crate) fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        let h = DIMENSION;
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        let mut x = Vec::with_capacity(total * h);
        for s in seqs {
            if s.len() > self.max_pos {
                return Err(format!("{} tokens, more than {}", s.len(), self.max_pos));
            }
            for (p, &id) in s.iter().enumerate() {
                let id = id as usize;
                let w = self
                    .word
                    .get(id * h..(id + 1) * h)
                    .ok_or_else(|| format!("token id {id} is out of the vocabulary"))?;
                let pt = &self.pos_type[p * h..(p + 1) * h];
                x.extend(w.iter().zip(pt).map(|(a, b)| a + b));
            }
        }
        layer_norm(&mut x, None, &self.emb_ln, self.eps);
        let mut ctx = vec![0f32; total * h];
        let mut scores = Vec::new();
        for l in &self.layers {
            let qkv = l.qkv.w.forward(&x, total);
            attention(&qkv, seqs, self.heads, &mut ctx, &mut scores);
            let mut a = l.out.w.forward(&ctx, total);
            layer_norm(&mut a, Some(&x), &l.ln1, self.eps);
            let mut u = l.up.w.forward(&a, total);
            gelu(&mut u);
            x = l.down.w.forward(&u, total);
            layer_norm(&mut x, Some(&a), &l.ln2, self.eps);
        }
        // Mean over each text's tokens, then L2 normalisation (sentence-transformers).
        let mut out = Vec::with_capacity(seqs.len());
        let mut rows = x.chunks_exact(h);
        for s in seqs {
            let mut m = vec![0f32; h];
            for row in rows.by_ref().take(s.len()) {
                m.iter_mut().zip(row).for_each(|(a, b)| *a += b);
            }
            let n = s.len().max(1) as f32;
            m.iter_mut().for_each(|a| *a /= n);
            let norm = dot(&m, &m).sqrt().max(1e-12);
            m.iter_mut().for_each(|a| *a /= norm);
            out.push(m);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Dense kernel.
//
// Small-M matmul for y = x W + b with W pre-packed at load time into 16-column panels
// (panel p holds rows k = 0..K of columns 16p..16p+16, contiguous), so each forward streams
// every weight exactly once, sequentially, and each panel is reused from L1/L2 by all token
// blocks. Safe Rust; `pulp` runs it under AVX2+FMA when the CPU has them.
const PANEL: usize = 16;
const MT: usize = 6; // tokens per block: 6 x 2 ymm accumulators + 2 weight + 1 broadcast regs

struct Packed {
    k: usize,
    n: usize,
    panels: Vec<[f32; PANEL]>,
    bias: Vec<f32>,
}

impl Packed {
    /// `wt` is (k, n) row-major (already transposed from torch's (out, in)).
    fn new(wt: &[f32], k: usize, n: usize, bias: Vec<f32>) -> Option<Packed> {
        if !n.is_multiple_of(PANEL) || wt.len() != k * n || bias.len() != n {
            return None;
        }
        let mut panels = vec![[0f32; PANEL]; (n / PANEL) * k];
        for p in 0..n / PANEL {
            for kk in 0..k {
                panels[p * k + kk]
                    .copy_from_slice(&wt[kk * n + p * PANEL..kk * n + p * PANEL + PANEL]);
            }
        }
        Some(Packed { k, n, panels, bias })
    }

    /// y (rows x n) = x (rows x k) W + b, on the calling thread: with 2 cores, short inputs
    /// and one or more embed workers, splitting a 20-row matmul across threads did not pay.
    fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        self.panels_range(x, rows, 0, self.n / PANEL)
    }

    /// Columns of panels p0..p1, as a (rows x (p1-p0)*PANEL) matrix.
    fn panels_range(&self, x: &[f32], rows: usize, p0: usize, p1: usize) -> Vec<f32> {
        let mut y = vec![0f32; rows * (p1 - p0) * PANEL];
        let job = PanelJob {
            me: self,
            x,
            rows,
            p0,
            p1,
            y: &mut y,
        };
        // AVX2+FMA: everything below is inlined into pulp's #[target_feature] frame, so the
        // accumulator loops become vfmadd231ps on ymm registers. Otherwise plain mul + add
        // (f32::mul_add without hardware FMA would be a slow libm call).
        match pulp::x86::V3::try_new() {
            Some(simd) => simd.vectorize(job),
            None => job.run::<false>(),
        }
        y
    }
}

struct PanelJob<'a> {
    me: &'a Packed,
    x: &'a [f32],
    rows: usize,
    p0: usize,
    p1: usize,
    y: &'a mut [f32],
}

impl pulp::NullaryFnOnce for PanelJob<'_> {
    type Output = ();
    #[inline(always)]
    fn call(self) {
        self.run::<true>()
    }
}

impl PanelJob<'_> {
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let PanelJob {
            me,
            x,
            rows,
            p0,
            p1,
            y,
        } = self;
        let w = (p1 - p0) * PANEL;
        for p in p0..p1 {
            let panel = &me.panels[p * me.k..(p + 1) * me.k];
            let bias = &me.bias[p * PANEL..(p + 1) * PANEL];
            let col = (p - p0) * PANEL;
            let mut r = 0;
            while r < rows {
                let m = (rows - r).min(MT);
                let xs = &x[r * me.k..(r + m) * me.k];
                let ys = &mut y[r * w..(r + m) * w];
                match m {
                    6 => block::<6, FMA>(xs, me.k, panel, bias, ys, w, col),
                    5 => block::<5, FMA>(xs, me.k, panel, bias, ys, w, col),
                    4 => block::<4, FMA>(xs, me.k, panel, bias, ys, w, col),
                    3 => block::<3, FMA>(xs, me.k, panel, bias, ys, w, col),
                    2 => block::<2, FMA>(xs, me.k, panel, bias, ys, w, col),
                    _ => block::<1, FMA>(xs, me.k, panel, bias, ys, w, col),
                }
                r += m;
            }
        }
    }
}

#[inline(always)]
fn block<const M: usize, const FMA: bool>(
    x: &[f32],
    k: usize,
    panel: &[[f32; PANEL]],
    bias: &[f32],
    y: &mut [f32],
    w: usize,
    col: usize,
) {
    let mut acc = [[0f32; PANEL]; M];
    let rows: [&[f32]; M] = std::array::from_fn(|t| &x[t * k..(t + 1) * k]);
    for (kk, wv) in panel[..k].iter().enumerate() {
        for t in 0..M {
            let xv = rows[t][kk];
            for c in 0..PANEL {
                acc[t][c] = if FMA {
                    xv.mul_add(wv[c], acc[t][c])
                } else {
                    acc[t][c] + xv * wv[c]
                };
            }
        }
    }
    for t in 0..M {
        let out = &mut y[t * w + col..t * w + col + PANEL];
        for c in 0..PANEL {
            out[c] = acc[t][c] + bias[c];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Element-wise parts.

/// x = LayerNorm(x + res), row by row (rows of DIMENSION).
fn layer_norm(x: &mut [f32], res: Option<&[f32]>, n: &Norm, eps: f32) {
    if let Some(res) = res {
        x.iter_mut().zip(res).for_each(|(a, b)| *a += b);
    }
    for r in x.chunks_exact_mut(DIMENSION) {
        let mean = sum(r) / DIMENSION as f32;
        r.iter_mut().for_each(|v| *v -= mean);
        let var = dot(r, r) / DIMENSION as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in r.iter_mut().zip(&n.g).zip(&n.b) {
            *v = *v * inv * g + b;
        }
    }
}

fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut ch = a.chunks_exact(8);
    for c in &mut ch {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + ch.remainder().iter().sum::<f32>()
}
fn attention(qkv: &[f32], seqs: &[&[u32]], heads: usize, ctx: &mut [f32], scores: &mut Vec<f32>) {
    let h = DIMENSION;
    let d = h / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let mut start = 0;
    for s in seqs {
        let len = s.len();
        scores.resize(len, 0.0);
        for hd in 0..heads {
            for i in 0..len {
                let q = &qkv[(start + i) * 3 * h + hd * d..][..d];
                let mut max = f32::NEG_INFINITY;
                for (j, sc) in scores.iter_mut().enumerate() {
                    let k = &qkv[(start + j) * 3 * h + h + hd * d..][..d];
                    *sc = dot(q, k) * scale;
                    max = max.max(*sc);
                }
                let mut z = 0.0;
                for sc in scores.iter_mut() {
                    *sc = (*sc - max).exp();
                    z += *sc;
                }
                let inv = 1.0 / z;
                let c = &mut ctx[(start + i) * h + hd * d..][..d];
                c.iter_mut().for_each(|v| *v = 0.0);
                for (j, p) in scores.iter().enumerate() {
                    let v = &qkv[(start + j) * 3 * h + 2 * h + hd * d..][..d];
                    let p = p * inv;
                    c.iter_mut().zip(v).for_each(|(a, b)| *a += p * b);
                }
            }
        }
        start += len;
    }
}

/// Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), with a rational erf (Eigen's f32 approximation,
/// a few ulp) that vectorises, instead of libm's scalar erff.
fn gelu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    p *= x;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329_2e-3;
    q = x2 * q + -1.426_474e-2;
    p / q
}
