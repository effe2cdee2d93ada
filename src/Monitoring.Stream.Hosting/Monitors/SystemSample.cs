namespace Monitoring.Stream.Hosting.Monitors;

/// <summary>One sample of the performance monitor; a figure the platform does not offer is null, never zero.</summary>
public sealed record SystemSample
{
    /// <summary>When the sample was taken.</summary>
    public DateTimeOffset Time { get; init; }

    /// <summary>Busy share of all cores since the previous sample, in percent (null on the first sample or without <c>/proc/stat</c>).</summary>
    public double? SystemCpuPercent { get; init; }

    /// <summary>This process's CPU time since the previous sample over the wall time of all cores, in percent (null on the first sample).</summary>
    public double? ProcessCpuPercent { get; init; }

    /// <summary>Physical memory, in bytes.</summary>
    public double? MemoryTotalBytes { get; init; }

    /// <summary>Physical memory in use (total less available), in bytes.</summary>
    public double? MemoryUsedBytes { get; init; }

    /// <summary>Physical memory in use, in percent of the total.</summary>
    public double? MemoryUsedPercent { get; init; }

    /// <summary>This process's working set, in bytes.</summary>
    public double ProcessWorkingSetBytes { get; init; }

    /// <summary>Bytes allocated on this process's GC heap.</summary>
    public double ProcessGcHeapBytes { get; init; }

    /// <summary>Per mount point: used bytes, total bytes, used percent.</summary>
    public IReadOnlyDictionary<string, (double UsedBytes, double TotalBytes, double UsedPercent)> Disks { get; init; } =
        new Dictionary<string, (double, double, double)>();

    /// <summary>Per network interface: total bytes received and sent, and their rates since the previous sample (null on the first).</summary>
    public IReadOnlyDictionary<string, (double ReceivedBytes, double SentBytes, double? ReceivedPerSecond, double? SentPerSecond)> Network { get; init; } =
        new Dictionary<string, (double, double, double?, double?)>();
}
