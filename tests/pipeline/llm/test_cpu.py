"""The CPU dtype choice: bfloat16 only where the CPU computes it natively (else vLLM CPU and torch fall back to
slow bf16 kernels: 45 vs 203 tokens/s measured on an AVX2-only AMD EPYC)."""

from pipeline.llm.cpu import cpu_dtype, cpu_flags, native_bf16, resolve_dtype

AVX2_ONLY = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma f16c\n\nprocessor\t: 1\n"
AVX512 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512vl avx512_bf16 amx_bf16\n"


def test_flags_are_read_from_cpuinfo(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(AVX2_ONLY)
    assert cpu_flags.__wrapped__(str(path)) == frozenset({"fpu", "sse2", "avx", "avx2", "fma", "f16c"})
    assert cpu_flags.__wrapped__(str(tmp_path / "missing")) == frozenset()


def test_bf16_only_where_the_cpu_has_it(tmp_path):
    (tmp_path / "a").write_text(AVX2_ONLY)
    (tmp_path / "b").write_text(AVX512)
    assert cpu_dtype(cpu_flags.__wrapped__(str(tmp_path / "a"))) == "float32"
    assert cpu_dtype(cpu_flags.__wrapped__(str(tmp_path / "b"))) == "bfloat16"
    assert cpu_dtype(frozenset()) == "float32"  # nothing known: the safe choice


def test_resolve_dtype():
    assert resolve_dtype("float16") == "float16"  # an explicit choice is kept
    assert resolve_dtype("auto", "cuda") == "bfloat16"
    assert resolve_dtype("auto", "cpu") == cpu_dtype()


def test_training_uses_bf16_only_where_the_cpu_computes_it():
    assert native_bf16(frozenset({"avx2", "avx512_bf16"}))
    assert native_bf16(frozenset({"amx_bf16"}))
    assert not native_bf16(frozenset({"avx2", "avx512f"}))  # converts on the fly: unmeasured, float32
    assert not native_bf16(frozenset())


def test_the_trainers_bf16_setting(monkeypatch):
    import pipeline.llm.cpu as cpu
    from training.run import use_bf16

    assert use_bf16(True, gpu=False) and not use_bf16(False, gpu=True)  # an explicit choice is kept
    assert use_bf16(None, gpu=True)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2"}))
    assert not use_bf16(None, gpu=False)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert use_bf16(None, gpu=False)
