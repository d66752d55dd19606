from tests.runtime.conftest import clock  # noqa: F401 - the settable clock fixture
