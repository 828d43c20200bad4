"""Visual reports: the AU timeline (SVG/PNG) and the self-contained HTML report."""
