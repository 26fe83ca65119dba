import spacedrive.integrations as integrations


def test_all_lists_exactly_the_public_names_of_the_package() -> None:
    public = {
        name
        for name, value in vars(integrations).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("spacedrive.integrations")
    }
    assert public - {"config", "errors", "manager", "manifest", "packages", "registry", "supervisor"} <= set(
        integrations.__all__
    )


def test_all_has_no_duplicates_and_every_name_resolves() -> None:
    assert len(integrations.__all__) == len(set(integrations.__all__))
    for name in integrations.__all__:
        assert hasattr(integrations, name), name
