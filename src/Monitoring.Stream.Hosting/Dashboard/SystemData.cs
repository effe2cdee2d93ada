namespace Monitoring.Stream.Hosting.Dashboard;

/// <summary>Host and process figures over the window, from the performance monitor; null where none was sampled.</summary>
/// <param name="CpuPercent">System CPU usage.</param>
/// <param name="ProcessCpuPercent">This process's CPU usage.</param>
/// <param name="MemoryUsedPercent">System memory in use.</param>
/// <param name="MemoryUsedBytes">System memory in use, bytes.</param>
/// <param name="ProcessWorkingSetBytes">This process's working set.</param>
/// <param name="ProcessGcHeapBytes">This process's GC heap.</param>
/// <param name="Disks">Each sampled mount.</param>
public sealed record SystemData(StatSummary? CpuPercent, StatSummary? ProcessCpuPercent, StatSummary? MemoryUsedPercent, StatSummary? MemoryUsedBytes,
    StatSummary? ProcessWorkingSetBytes, StatSummary? ProcessGcHeapBytes, IReadOnlyList<DiskData> Disks);
