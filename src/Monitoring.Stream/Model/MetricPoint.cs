namespace Monitoring.Stream.Model;

/// <summary>One observation of a metric: name, labels, value and event time.</summary>
/// <param name="Metric">The metric name, following the Prometheus data model.</param>
/// <param name="Labels">The canonical label set of the series.</param>
/// <param name="Value">The observed value; must be finite.</param>
/// <param name="TimestampUnixMs">Event time, in milliseconds since the Unix epoch (UTC).</param>
public readonly record struct MetricPoint(string Metric, LabelSet Labels, double Value, long TimestampUnixMs);
