namespace Monitoring.Stream.Server.Api;

/// <summary>One metric known to the service.</summary>
/// <param name="Name">The metric name.</param>
/// <param name="Labels">Label names seen on its series, sorted.</param>
/// <param name="LastWindowEnd">End of its latest emitted window.</param>
internal sealed record MetricInfo(string Name, IReadOnlyList<string> Labels, DateTimeOffset LastWindowEnd);
