"""ONNX Runtime's uint8 x int8 kernels saturate on some CPUs; convgen's oracle sessions do not.

On x86 CPUs with AVX2 but without VNNI, ORT's default U8S8 kernels add pairs of products in
saturating int16 (``vpmaddubsw``). ``convgen.golden.ort.session`` turns on ORT's exact U8U8 path
(``session.x64quantprecision``), so every comparison with ORT in this suite holds on every CPU.
These tests show which kernel this machine has, and check both claims with a probe whose exact
answer is computed here: ``[255]*4 . [127]*4``.
"""

from convgen.golden import ort as O


def test_probe_constants_are_exact_arithmetic():
    assert sum(255 * 127 for _ in range(4)) == O.PROBE_EXACT == 129_540
    # vpmaddubsw: each pair 2*255*127 = 64,770 saturates to 32,767; vpmaddwd adds the two pairs
    assert O.PROBE_SATURATED == 2 * min(2 * 255 * 127, 2 ** 15 - 1) == 65_534


def test_exact_session_is_exact_on_this_cpu():
    assert O.probe(exact=True) == O.PROBE_EXACT


def test_default_session_saturates_only_where_documented(capsys):
    got = O.probe(exact=False)
    # anything else than one of these two would be a kernel behaviour we have not accounted for
    assert got in (O.PROBE_EXACT, O.PROBE_SATURATED), got
    kind = "saturating U8S8 kernel (AVX2 without VNNI)" if got == O.PROBE_SATURATED else "exact U8S8 kernel"
    with capsys.disabled():
        print(f"\nORT default u8 x s8 kernel on this CPU: {kind}")
    assert O.u8s8_saturates() == (got == O.PROBE_SATURATED)
