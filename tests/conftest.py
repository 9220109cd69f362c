pytest_plugins = [
    "tests.support.s3",
    "tests.support.db",
    "tests.support.app",
    "tests.support.stack",
    "tests.support.fileserver",
    "tests.support.browser",
    "tests.support.receivers",
    "tests.support.pgcluster",
    "tests.support.brokers",
    "tests.support.validators",
]
