import spacedrive.daemon as daemon


def test_all_lists_exactly_the_public_names_of_the_package() -> None:
    public = {
        name
        for name, value in vars(daemon).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("spacedrive.daemon")
    }
    assert public - {"client", "errors", "service"} <= set(daemon.__all__)


def test_all_has_no_duplicates_and_every_name_resolves() -> None:
    assert len(daemon.__all__) == len(set(daemon.__all__))
    for name in daemon.__all__:
        assert hasattr(daemon, name), name
