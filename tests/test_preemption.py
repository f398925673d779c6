"""SIGTERM / Ctrl-C become a request to stop at the next step boundary (the loop saves that step)."""

import os
import signal
import threading

import pytest

from mofgseg_jax.train.preemption import StopRequest

pytestmark = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                reason="signal handlers live in the main thread")


def test_no_signal_no_stop():
    with StopRequest() as stop:
        assert not stop.should_stop(1) and stop.name == ""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_asks_to_stop_and_the_previous_handler_comes_back(signum):
    before = signal.getsignal(signum)
    with StopRequest() as stop:
        os.kill(os.getpid(), signum)
        assert stop.should_stop(7) and stop.name == signal.Signals(signum).name
    assert signal.getsignal(signum) is before


def test_a_second_ctrl_c_stops_at_once():
    with StopRequest():
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
