from flowkit.engine import UserMessage


def test_pizza_end_to_end(runtime, channel, store):
    for i, text in enumerate(["pizza", "large", "yes", "2", "12 Main Street"]):
        out = runtime.handle("u1", UserMessage(text=text, message_id=f"m{i}"))
        assert out.status == "applied", out
    st = store.load("u1")
    print(channel.texts("u1"))
    print(st)
    assert st["status"] == "completed"
