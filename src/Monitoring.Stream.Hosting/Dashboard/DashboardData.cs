namespace Monitoring.Stream.Hosting.Dashboard;

/// <summary>Everything a monitoring page shows for one window; serialise with <see cref="DashboardJsonContext"/> (docs/sdk.md documents the shape).</summary>
/// <param name="GeneratedAt">When the data was gathered.</param>
/// <param name="WindowSeconds">The window's length.</param>
/// <param name="From">Start of the window.</param>
/// <param name="To">End of the window.</param>
/// <param name="Health">Overall and per-check health (null when no health checks are registered).</param>
/// <param name="System">Host and process figures.</param>
/// <param name="Requests">HTTP requests.</param>
/// <param name="Documents">Document processing.</param>
/// <param name="Engine">The engine's own figures.</param>
public sealed record DashboardData(DateTimeOffset GeneratedAt, double WindowSeconds, DateTimeOffset From, DateTimeOffset To,
    HealthData? Health, SystemData System, RequestData Requests, DocumentData Documents, EngineData Engine);
