"""genvault: webhook receiver and tamper-evident archiver for hosted image-generation APIs."""

__version__ = "0.1.0"
