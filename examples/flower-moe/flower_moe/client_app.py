"""ClientApp: trains the experts FedAlign sends, on this node's partition.

The node's partition comes from its ``node_config`` (``partition-id``, ``num-partitions``);
its answer to the profile query carries the whole ``node_config``, so capacity fields such as
``max-experts`` or ``memory`` set on the SuperNode reach the scheduler.

``fail-rounds`` in ``node_config`` (an int, or a comma-separated string such as ``"2,3"``)
makes the node raise in those rounds: a way to watch the strategy treat a failing node as a
dropout while the round completes with the others. ``poison-rounds`` (same form) makes it
return, in those rounds, its update scaled by 10 and sign-flipped with a claim of 10**12
examples: a hostile node, to watch the defenses of docs/trust.md (the ServerApp's
``aggregation`` and ``screen`` run-config keys).
"""

from __future__ import annotations

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedalign.flower import records as rec
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


def _rounds(context: Context, key: str) -> set[int]:
    raw = context.node_config.get(key, "")
    return {int(r) for r in str(raw).split(",") if str(r).strip()}


def _poisoned(msg: Message, reply: Message) -> Message:
    """``reply`` with every float array ``sent - 10 x (trained - sent)`` and 10**12 examples."""
    sent = read_train_task(msg).state()
    trained = rec.arrays_to_numpy(reply.content[rec.ARRAYS])
    arrays = {
        k: (sent[k] - 10 * (v - sent[k])).astype(v.dtype) if v.dtype.kind == "f" else v
        for k, v in trained.items()
    }
    metrics = MetricRecord(dict(reply.content[rec.METRICS]))
    metrics[rec.NUM_EXAMPLES] = 10**12
    content = RecordDict({rec.ARRAYS: rec.numpy_to_arrays(arrays), rec.METRICS: metrics})
    return Message(content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the shared layers and the experts this node was given."""
    server_round = read_train_task(msg).server_round
    if server_round in _rounds(context, "fail-rounds"):
        raise RuntimeError(f"node {context.node_id} fails round {server_round} (fail-rounds)")
    reply = train_moe(msg, _node(context), seed=int(context.run_config["seed"]))
    if server_round in _rounds(context, "poison-rounds"):
        return _poisoned(msg, reply)
    return reply


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the full global model on this node's data."""
    return evaluate_moe(msg, _node(context))


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Answer the strategy's profile query with this node's node_config."""
    return profile_reply(msg, context)
