"""Structure-aware fuzzing of the decoder, bounded to about a minute (issue 18).

Mutated streams of every codec (tools/fuzz/streams.py: raw damage with the CRC left alone;
section bytes and header JSON mutated with the CRC recomputed; splices of two seeds) are
decoded in a worker process under a memory cap. Every case must decode or raise an errbound
error: a crash, a hang, an allocation above the cap or any other exception fails the test,
with the offending streams written under the test's temporary folder for replay. The long
campaign (tools/fuzz/campaign.py) runs the same harness on millions of cases."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "fuzz"))
import parameters  # noqa: E402
import streams as fuzz  # noqa: E402

CODECS = ("sz", "fz", "sperr", "hlr", "zfp", "raw", "auto")
CASES_PER_CODEC = 3000


@pytest.fixture(scope="module")
def seeds():
    return fuzz.seed_streams()


@pytest.mark.parametrize("codec", CODECS)
def test_mutated_streams_decode_or_raise_errbound_errors(codec, seeds, tmp_path):
    cases = fuzz.cases(seeds, CASES_PER_CODEC, seed=sum(map(ord, codec)), codec=codec)
    report = fuzz.run(cases, cap=512 << 20, max_bytes=64 << 20, hang_seconds=20)
    print(codec, fuzz.summary(report))
    for i, (_, _, _, _, blob) in enumerate(report.findings):
        (tmp_path / f"finding-{i}.eb").write_bytes(blob)
    assert not report.findings, fuzz.summary(report) + "\n" + fuzz.describe(report.findings)
    assert report.counts["errbound"] > CASES_PER_CODEC // 2  # the mutations do reach the checks


PARAMETER_CASES_PER_CODEC = 6000


@pytest.mark.parametrize("codec", CODECS)
def test_forged_parameters_decode_or_raise_errbound_errors(codec, seeds, tmp_path):
    """Every numeric stage parameter of the codec's seeds set to a hostile value (and pairs of
    them, drawn at random), with the declared shape kept or as large as a header may declare,
    decoded without max_bytes, so that the huge shapes reach the codecs' own checks (alpha
    1e6 over 2**54 declared values raised OverflowError from sz before)."""
    cases = parameters.parameter_cases(seeds, PARAMETER_CASES_PER_CODEC, seed=sum(map(ord, codec)), codec=codec)
    assert cases, f"no numeric stage parameter in the {codec} seeds"
    report = fuzz.run(cases, cap=512 << 20, max_bytes=None, hang_seconds=20)
    print(codec, fuzz.summary(report))
    for i, (_, _, _, _, blob) in enumerate(report.findings):
        (tmp_path / f"finding-{i}.eb").write_bytes(blob)
    assert not report.findings, fuzz.summary(report) + "\n" + fuzz.describe(report.findings)
    assert report.counts["errbound"] > len(cases) // 4  # the forgeries do reach the checks
