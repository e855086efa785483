"""The original challenge's sample flow, unchanged but for where TaskHandler comes from.

Registers 11 fake tasks (each runs 1-9 s), prints the time around each
registration to show that it does not block, waits on the first task's status,
then prints its status and result.

Other tasks may still run when it ends. At exit, polling ones are cancelled;
blocking ones cannot be interrupted, so they are waited for. When that takes
over a second, a line on stderr says how many are left
("taskrunner: waiting for 3 running tasks (Ctrl-C to quit now)"), and Ctrl-C
quits at once with status 130.
"""

from time import sleep, time

from taskrunner import TaskHandler
from taskrunner.faketasks import gen_task

if __name__ == "__main__":
    ntask = gen_task(2)
    task_handler = TaskHandler()
    id = task_handler.register_task(ntask)
    for _ in range(10):
        # Ensures that registration isn't blocking
        print(time())
        ntask = gen_task(2)
        task_handler.register_task(ntask)
        print(time())
    # Ensures that get_task_status works
    while task_handler.get_task_status(id):
        sleep(1)
    print(task_handler.get_task_status(id))
    print(task_handler.get_task_result(id))
