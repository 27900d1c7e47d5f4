"""The dg defs folder: each subfolder's `defs.yaml` declares a component, such as a Jira site
(`type: jira_pipeline.JiraSite`); `jira_pipeline.definitions` merges them with the environment's
site and the registered connections."""
