"""Sun Grid Engine adapter: typed jobs/hosts (`model`), pure parsers (`parse`), async client (`client`)."""
