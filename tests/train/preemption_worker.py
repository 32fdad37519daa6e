"""One process of the 2-process preemption test: `python -m tests.train.preemption_worker PID PORT MODE`.

MODE 'loop': steps a tiny jitted computation inside `train.loop.Preemption`; process 1 sends itself SIGTERM
after step 5; each process prints `stop N` at the step where it agreed to stop. MODE 'before': process 1 sends
itself SIGTERM after `jax.distributed` started, before any loop (it must die of it at once).
"""

import os
import signal
import sys
import time

import jax

SIGNAL_AT = 5


def main(process_id: int, port: int, mode: str) -> None:
  jax.config.update('jax_num_cpu_devices', 2)
  from overfeat_jax.parallel import distributed, mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  distributed.initialize(f'127.0.0.1:{port}', 2, process_id, initialization_timeout=60)
  if mode == 'before':
    if process_id == 1:
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(30)
      print('survived SIGTERM', flush=True)
      os._exit(0)
    time.sleep(5)  # process 0 hosts the coordination service: outlive process 1's start-up
    os._exit(0)  # no shutdown barrier with a peer that is gone
  from overfeat_jax.train import loop  # pylint: disable=g-import-not-at-top
  mesh = mesh_lib.make_mesh()
  step_fn = jax.jit(lambda x: x * 1.0001 + 1.0, out_shardings=mesh_lib.replicated(mesh))
  x = jax.device_put(jax.numpy.zeros((256, 256)), mesh_lib.replicated(mesh))
  with loop.Preemption(mesh) as preemption:
    for step in range(1, 200):
      x = step_fn(x)
      time.sleep(0.01)
      if preemption.agreed():
        print(f'stop {step}', flush=True)
        return
      if step == SIGNAL_AT and process_id == 1:
        os.kill(os.getpid(), signal.SIGTERM)
  print('never stopped', flush=True)


if __name__ == '__main__':
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
