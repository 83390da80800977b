"""Fails unless the installed llama-cpp-python was built for the generic x86-64 set.

A build compiled for the build machine's CPU (ggml's default, GGML_NATIVE=ON) crashed with
SIGSEGV in libggml-cpu on a CPU with AVX-512 and AMX, so the end-to-end test could not run there;
scripts/test.sh builds it with CMAKE_ARGS=-DGGML_NATIVE=OFF. llama.cpp reports the instruction
sets its CPU backend was compiled with; none of the CPU-specific extensions may be among them,
whatever CPU this machine has.
"""

from __future__ import annotations

import re
import sys

import llama_cpp

# Instruction-set extensions a portable x86-64 build must not be compiled for.
NOT_PORTABLE = re.compile(r"\b(AVX512\w*|AMX\w*|AVX_VNNI|AVX_BF16)\s*=\s*1")


def main() -> int:
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    print(f"llama.cpp system info: {info}")
    if "CPU :" not in info:
        print("error: llama.cpp reported no CPU backend features", file=sys.stderr)
        return 1
    found = sorted(set(NOT_PORTABLE.findall(info)))
    if found:
        print(
            f"error: llama-cpp-python was built for this CPU ({', '.join(found)}); rebuild it "
            "with CMAKE_ARGS=-DGGML_NATIVE=OFF and pip --no-cache-dir",
            file=sys.stderr,
        )
        return 1
    print("ok: llama-cpp-python is a portable build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
