namespace Monitoring.Stream.Hosting.Dashboard;

/// <summary>One sink of the engine, now.</summary>
/// <param name="Name">The sink's name.</param>
/// <param name="State"><c>Ok</c>, <c>Retrying</c>, <c>Stalled</c> or <c>Dropping</c>.</param>
/// <param name="QueueDepth">Windows waiting.</param>
/// <param name="BatchesWritten">Windows written.</param>
/// <param name="BatchesLost">Windows given up or dropped.</param>
/// <param name="Errors">Failed attempts.</param>
/// <param name="LastError">The last error, if any.</param>
public sealed record SinkData(string Name, string State, int QueueDepth, long BatchesWritten, long BatchesLost, long Errors, string? LastError);
