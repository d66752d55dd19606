"""Every content type the parser accepts has exactly one reader (contacts: an array, read apart)."""

from flowkit.channels.whatsapp import content
from flowkit.channels.whatsapp.inbound import MEDIA_TYPES


def test_every_content_type_has_one_reader() -> None:
    assert set(content._READERS) | set(MEDIA_TYPES) | {"contacts"} == content.CONTENT_TYPES
    assert not set(content._READERS) & set(MEDIA_TYPES)


def test_the_old_import_paths_still_work() -> None:
    from flowkit.channels.whatsapp import webhook

    for name in webhook.__all__:
        assert getattr(webhook, name) is not None
    assert webhook.InboundMessage.__module__ == "flowkit.channels.whatsapp.inbound"
