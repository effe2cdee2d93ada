namespace Monitoring.Stream.Hosting.Dashboard;

/// <summary>The engine's own figures: totals since start, and rates over the window where self-metrics were recorded.</summary>
/// <param name="Offered">Points offered since start.</param>
/// <param name="Accepted">Points accepted since start.</param>
/// <param name="Rejected">Points refused since start.</param>
/// <param name="Dropped">Points dropped since start.</param>
/// <param name="Late">Points late since start.</param>
/// <param name="WindowsEmitted">Window batches emitted since start.</param>
/// <param name="SeriesActive">Series known to the registry.</param>
/// <param name="AcceptedPerSecond">Accepted points per second over the window (null without recorded self-metrics).</param>
/// <param name="DroppedInWindow">Points dropped within the window (null without recorded self-metrics).</param>
/// <param name="LateInWindow">Points late within the window (null without recorded self-metrics).</param>
/// <param name="Sinks">Each sink, now.</param>
public sealed record EngineData(long Offered, long Accepted, long Rejected, long Dropped, long Late, long WindowsEmitted, int SeriesActive,
    double? AcceptedPerSecond, double? DroppedInWindow, double? LateInWindow, IReadOnlyList<SinkData> Sinks);
