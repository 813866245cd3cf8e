"""bluesky plans of operando-stream: XRD-CT zigzag, XCT, XCS, cycling, operando loops."""

__all__: list[str] = []
