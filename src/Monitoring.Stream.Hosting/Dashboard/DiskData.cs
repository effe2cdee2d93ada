namespace Monitoring.Stream.Hosting.Dashboard;

/// <summary>Usage of one mounted file system over the window.</summary>
/// <param name="Mount">The mount point.</param>
/// <param name="UsedPercent">Used share, in percent.</param>
public sealed record DiskData(string Mount, StatSummary? UsedPercent);
