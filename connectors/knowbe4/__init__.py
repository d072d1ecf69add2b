"""KnowBe4 security awareness: training enrolments and phishing tests (Reporting API)."""

from connectors.knowbe4.connector import KnowBe4Connector, KnowBe4Options

__all__ = ["KnowBe4Connector", "KnowBe4Options"]
