"""ClientApp: trains the experts FedAlign sends, on this node's partition.

The node's partition comes from its ``node_config`` (``partition-id``, ``num-partitions``);
its answer to the profile query carries the whole ``node_config``, so capacity fields such as
``max-experts`` or ``memory`` set on the SuperNode reach the scheduler.

``fail-rounds`` in ``node_config`` (an int, or a comma-separated string such as ``"2,3"``)
makes the node raise in those rounds: a way to watch the strategy treat a failing node as a
dropout while the round completes with the others.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedalign.flower.client import MoENode, evaluate_moe, profile_reply, read_train_task, train_moe

app = ClientApp()


def _node(context: Context) -> MoENode:
    from . import task  # imports torch: only for the messages that need the model

    part = int(context.node_config["partition-id"])
    world = task.setup(context.run_config, int(context.node_config["num-partitions"]))
    return MoENode(
        model=task.new_model(world),
        train_data=world.partition.clients[part],
        client_index=part,
    )


def _fail_rounds(context: Context) -> set[int]:
    raw = context.node_config.get("fail-rounds", "")
    return {int(r) for r in str(raw).split(",") if str(r).strip()}


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the shared layers and the experts this node was given."""
    server_round = read_train_task(msg).server_round
    if server_round in _fail_rounds(context):
        raise RuntimeError(f"node {context.node_id} fails round {server_round} (fail-rounds)")
    return train_moe(msg, _node(context), seed=int(context.run_config["seed"]))


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the full global model on this node's data."""
    return evaluate_moe(msg, _node(context))


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Answer the strategy's profile query with this node's node_config."""
    return profile_reply(msg, context)
