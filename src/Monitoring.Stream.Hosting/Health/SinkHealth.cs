using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Hosting.Health;

/// <summary>The state of one sink at a health check.</summary>
/// <param name="Name">The sink's name.</param>
/// <param name="State">How it fares: the pipeline's own state, or <see cref="SinkState.Stalled"/> when windows wait and none was written for longer than the stall threshold.</param>
/// <param name="Pending">Windows handed to it and not yet written or given up.</param>
/// <param name="SinceProgress">Time since it last wrote or gave up a window (zero when nothing is pending).</param>
/// <param name="LastError">Its last error, if any.</param>
public sealed record SinkHealth(string Name, SinkState State, long Pending, TimeSpan SinceProgress, string? LastError);
