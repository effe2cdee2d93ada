namespace Monitoring.Stream.Hosting.Dashboard;

/// <summary>Requests of one method and route template over the window.</summary>
/// <param name="Method">The HTTP method.</param>
/// <param name="Route">The route template.</param>
/// <param name="Count">Requests.</param>
/// <param name="LatencySeconds">Their duration.</param>
public sealed record RouteData(string Method, string Route, long Count, StatSummary? LatencySeconds);
