import spacedrive.credentials as credentials


def test_all_lists_exactly_the_public_names_of_the_package() -> None:
    public = {
        name
        for name, value in vars(credentials).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("spacedrive.credentials")
    }
    assert public - {"errors"} == set(credentials.__all__) - {
        "CHECKPOINTS",
        "CREDENTIAL_METHODS",
        "CREDENTIAL_TYPES",
        "LOGIN_TIMEOUT_S",
        "REFRESH_MARGIN_S",
        "CredentialType",
    }


def test_all_has_no_duplicates_and_every_name_resolves() -> None:
    assert len(credentials.__all__) == len(set(credentials.__all__))
    for name in credentials.__all__:
        assert hasattr(credentials, name), name
