namespace Monitoring.Stream.Ingest;

/// <summary>Why accepted-looking points were dropped before aggregation. Every drop is counted.</summary>
public enum DropReason
{
    /// <summary>The shard's channel was full and the producer does not wait.</summary>
    QueueFull = 0,

    /// <summary>The pipeline had stopped when the points were written or flushed.</summary>
    PipelineStopped = 1,

    /// <summary>A shard failed while aggregating the batch (see <c>PipelineMetrics.LastFault</c>); the batch's points are lost.</summary>
    ShardFault = 2,
}
