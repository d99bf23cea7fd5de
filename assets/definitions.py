"""The code location: every asset, check, job, sensor and resource of websim."""

import dagster as dg

from assets import (checks, evaluation, executors, exports, ingest, jobs, navigation, questions, report_tasks,
                    schedules, sensors, simulator, training, training_report)
from assets.llm_resource import LLMResource
from assets.resources import InputsResource, PathsResource, StoreResource

defs = dg.Definitions(
    assets=[ingest.warc_pages, ingest.clickstream, ingest.pages, ingest.link_graph, simulator.snapshot,
            report_tasks.report_tasks, navigation.navigation_tasks, questions.evidence_chains,
            questions.candidate_questions, questions.hard_queries, training.sft_traces, training.sft_model,
            training.grpo_model, training_report.report_sft_model, training_report.report_grpo_model,
            evaluation.evaluation, exports.trainer_exports],
    asset_checks=[checks.pages_contracts, checks.link_graph_contracts, simulator.snapshot_title_search,
                  questions.evidence_chains_contracts, questions.hard_queries_contracts],
    jobs=[jobs.warc_ingest_job, jobs.clickstream_ingest_job, jobs.warc_backfill, jobs.clickstream_backfill,
          jobs.store_build_job, jobs.synthesis_job, jobs.training_job, schedules.refresh_job],
    schedules=[schedules.refresh_on_new_pages],
    sensors=[sensors.warc_files_sensor, sensors.clickstream_files_sensor, sensors.run_failure_log],
    executor=executors.executor_from_env(),
    resources={"store": StoreResource(), "inputs": InputsResource(), "simulator": simulator.SimulatorResource(),
               "llm": LLMResource(), "paths": PathsResource()},
)
