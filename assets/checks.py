"""Asset checks: the data contracts of the store that later stages rely on (defined in `pipeline.ingest.store`)."""


import dagster as dg

from assets.ingest import link_graph, pages
from assets.resources import StoreResource
from pipeline.ingest.store import CONTRACTS


def _contract_check(asset: dg.AssetsDefinition, table: str) -> dg.AssetChecksDefinition:
    specs = [dg.AssetCheckSpec(name=name, asset=asset, description=promise)
             for name, (_, promise) in CONTRACTS[table].items()]

    @dg.multi_asset_check(specs=specs, name=f"{table}_contracts")
    def _check(store: StoreResource):
        for name, (bad, promise) in store.get().contract_violations(table).items():
            yield dg.AssetCheckResult(asset_key=asset.key, check_name=name, passed=bad == 0,
                                      metadata={"violations": bad}, description=promise)

    return _check


pages_contracts = _contract_check(pages, "pages")
link_graph_contracts = _contract_check(link_graph, "link_graph")
