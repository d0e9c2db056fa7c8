"""The site's training script (NVFlare Client API), run by ScriptRunner on every site.

It rebuilds the world from the settings on its command line, takes its partition
(``--partition``), and serves the controller's tasks with
:func:`fedalign.nvflare.client.run_site`: each round it trains the shared layers and the
experts it was sent (:func:`fedalign.nvflare.client.train_moe`) and replies with the arrays,
the samples, one reward per expert (measured on the expert as received) and the duration.

``--fail-rounds 1`` (NVFlare rounds count from 0) makes the site raise in those rounds: the
reply becomes an error, the controller records a dropout and the round completes without it.
"""

from __future__ import annotations

import argparse

import moe_task
import nvflare.client as flare
from nvflare.app_common.abstract.fl_model import FLModel

from fedalign.nvflare import client as fc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for key, value in moe_task.DEFAULTS.items():
        parser.add_argument(f"--{key}", type=type(value), default=value)
    parser.add_argument("--partition", type=int, required=True, help="this site's data partition")
    parser.add_argument("--fail-rounds", type=int, nargs="*", default=[], help="rounds to fail")
    args = vars(parser.parse_args())
    partition, fail_rounds = args.pop("partition"), set(args.pop("fail_rounds"))
    settings = {key: args[key.replace("-", "_")] for key in moe_task.DEFAULTS}
    world = moe_task.world(settings)
    site = fc.MoESite(
        model=moe_task.new_model(world),
        train_data=world.partition.clients[partition],
        client_index=partition,
    )

    def train(task: fc.TrainTask) -> FLModel:
        if task.current_round in fail_rounds:
            raise RuntimeError(
                f"{flare.get_site_name()} fails round {task.current_round} (--fail-rounds)"
            )
        return fc.train_moe(task, site, seed=int(settings["seed"]))

    fc.run_site(train, flare=flare)


if __name__ == "__main__":
    main()
