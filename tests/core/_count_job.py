"""A job for tests of the job system; run as a script, it hosts that job in a real process.

python _count_job.py DATA_DIR start N    dispatch a job counting to N, print each checkpoint
python _count_job.py DATA_DIR resume     resume interrupted jobs, print where they resumed
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, ClassVar

from spacedrive.core.events import EventBus
from spacedrive.core.jobs import Job, JobContext, JobSystem
from spacedrive.core.library import LibraryManager

#: Pace of the job when hosted by the script: the work it simulates, not a wait for anything.
STEP_S = 0.005


class CountJob(Job):
    """Counts to ``n``, one checkpoint per step. Tests may gate each step through ``gate``."""

    name = "test-count"
    version = 2
    gate: ClassVar[asyncio.Queue[None] | None] = None
    started: ClassVar[list[int]] = []

    @classmethod
    def upgrade_state(cls, state: dict[str, Any], from_version: int) -> dict[str, Any]:
        if from_version == 1:
            return {"i": state["count"], "n": state["target"]}
        return super().upgrade_state(state, from_version)

    async def run(self, ctx: JobContext) -> Any:
        CountJob.started.append(self.state["i"])
        while self.state["i"] < self.state["n"]:
            if self.gate is not None:
                await self.gate.get()
            elif self.state.get("pace"):
                await asyncio.sleep(STEP_S)
            await ctx.checkpoint({**self.state, "i": self.state["i"] + 1})
            ctx.progress(self.state["i"], self.state["n"])
            if self.state.get("echo"):
                print(f"step {self.state['i']}", flush=True)
            if self.state.get("fail_at") == self.state["i"]:
                raise RuntimeError(f"failed at step {self.state['i']}")
        return {"counted": self.state["i"]}


async def _main(data_dir: Path, mode: str, args: list[str]) -> None:
    library = LibraryManager(data_dir).open()
    async with JobSystem(library, EventBus(), [CountJob]) as jobs:
        if mode == "start":
            ids = [jobs.dispatch(CountJob({"i": 0, "n": int(args[0]), "echo": True, "pace": True}))]
        else:
            ids = jobs.resume_interrupted()
            for job_id in ids:
                print(f"resumed {job_id} from {jobs.get(job_id).state['i']}", flush=True)
        for job_id in ids:
            record = await jobs.wait(job_id)
            print(f"{record.status} {record.output}", flush=True)
    library.close()


if __name__ == "__main__":
    asyncio.run(_main(Path(sys.argv[1]), sys.argv[2], sys.argv[3:]))
