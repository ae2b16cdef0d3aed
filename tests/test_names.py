import pytest

from sigtop.filters import FilterError, FlowFilter
from sigtop.names import UnknownSignalError, errno_name, parse_signal, si_code_name, signal_mask_names, signame


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("15", 15),
        ("TERM", 15),
        ("sigterm", 15),
        ("SIGUSR1", 10),
        ("RTMIN", 34),
        ("RTMIN+2", 36),
        ("SIGRTMAX-1", 63),
        ("0", 0),
    ],
)
def test_parse_signal(text, number):
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["SIGFOO", "65", "-1", "RTMIN+40", ""])
def test_parse_signal_rejects(text):
    with pytest.raises(UnknownSignalError):
        parse_signal(text)


def test_names():
    assert [signame(n) for n in (9, 34, 35, 64, 32)] == ["SIGKILL", "SIGRTMIN", "SIGRTMIN+1", "SIGRTMAX", "SIG32"]
    assert si_code_name(11, 2) == "SEGV_ACCERR"
    assert si_code_name(17, 3) == "CLD_DUMPED"
    assert si_code_name(10, -1) == "SI_QUEUE"
    assert si_code_name(10, 0x80) == "SI_KERNEL"
    assert errno_name(1) == "EPERM"
    assert signal_mask_names((1 << 1) | (1 << 34)) == ["SIGINT", "SIGRTMIN+1"]


@pytest.mark.parametrize("text", ["pid:abc", "pid:-3", "sig:NOPE", "foo:1", "pid:"])
def test_bad_filters_say_why(text):
    with pytest.raises(FilterError):
        FlowFilter.parse(text)
