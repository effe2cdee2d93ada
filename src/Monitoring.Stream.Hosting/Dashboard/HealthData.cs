namespace Monitoring.Stream.Hosting.Dashboard;

/// <summary>Overall and per-check health.</summary>
/// <param name="Status">The worst status of all checks.</param>
/// <param name="Checks">Each check, by name.</param>
public sealed record HealthData(string Status, IReadOnlyList<HealthCheckData> Checks);
