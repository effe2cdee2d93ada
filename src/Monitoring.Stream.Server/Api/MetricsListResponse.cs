namespace Monitoring.Stream.Server.Api;

/// <summary>The answer of <c>GET /api/v1/metrics</c>.</summary>
/// <param name="Metrics">The metrics, sorted by name.</param>
/// <param name="Omitted">Window rows of metrics the catalog had no room for (it keeps 10,000 names).</param>
internal sealed record MetricsListResponse(IReadOnlyList<MetricInfo> Metrics, long Omitted);
