// Each Kafka test starts its own mock cluster, consumers and pipelines; run one at a time so that on a small
// shared machine they do not starve each other's threads (group joins and rebalances are timing-sensitive).
[assembly: CollectionBehavior(DisableTestParallelization = true)]
