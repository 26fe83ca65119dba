import spacedrive.ipc as ipc


def test_all_lists_exactly_the_public_names_of_the_package() -> None:
    public = {name for name in vars(ipc) if not name.startswith("_")}
    assert set(ipc.__all__) == public


def test_all_has_no_duplicates_and_every_name_resolves() -> None:
    assert len(ipc.__all__) == len(set(ipc.__all__))
    for name in ipc.__all__:
        assert getattr(ipc, name) is not None
