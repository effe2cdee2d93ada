namespace Monitoring.Stream.Pipeline;

/// <summary>The life of a <see cref="MetricsPipeline"/>.</summary>
public enum PipelineState
{
    /// <summary>Created, not started.</summary>
    Created = 0,

    /// <summary>Taking points.</summary>
    Running = 1,

    /// <summary>A stop is under way: no more points are taken, open windows are going out.</summary>
    Stopping = 2,

    /// <summary>Stopped.</summary>
    Stopped = 3,

    /// <summary>A shard's loop ended on an error it could not contain; <see cref="PipelineMetrics.LastFault"/> says which.</summary>
    Faulted = 4,
}
