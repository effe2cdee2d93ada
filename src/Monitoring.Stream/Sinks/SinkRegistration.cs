namespace Monitoring.Stream.Sinks;

/// <summary>A sink with its own queue, timeout and retry settings.</summary>
/// <param name="Sink">The sink.</param>
/// <param name="Options">Its settings; null takes the defaults.</param>
public sealed record SinkRegistration(IWindowSink Sink, SinkOptions? Options = null);
