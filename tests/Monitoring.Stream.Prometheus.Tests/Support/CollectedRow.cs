namespace Monitoring.Stream.Prometheus.Tests.Support;

/// <summary>One row of an emitted window as the engine computed it, copied out of the Arrow batch.</summary>
internal sealed record CollectedRow(
    long WindowEndMs, string Metric, IReadOnlyList<KeyValuePair<string, string>> Labels, long Count, double Sum, double Min, double Max,
    double Mean, double StdDev, double Last, double?[] Quantiles, string Instance);
