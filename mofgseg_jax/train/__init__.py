"""Training: the state (`state.py`), optimiser (`optim.py`), EMA teacher (`ema.py`), the per-device
step (`step.py`), its mapping over devices (`parallel.py`), and the loop, checkpoints, evaluation
and logging around them (`loop.py`, `checkpoint.py`, `evaluate.py`, `tb.py`)."""
