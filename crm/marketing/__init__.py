"""Marketing automation: audiences, protective rules, campaigns and journeys (issue 22)."""
