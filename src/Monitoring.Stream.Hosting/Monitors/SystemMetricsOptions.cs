namespace Monitoring.Stream.Hosting.Monitors;

/// <summary>Settings of the performance monitor.</summary>
public sealed class SystemMetricsOptions
{
    /// <summary>Interval between samples (default 10 s).</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Where the Linux proc file system is mounted (default <c>/proc</c>); tests point it at a folder of their own.</summary>
    public string ProcRoot { get; set; } = "/proc";

    /// <summary>Mount points whose disk usage is sampled; empty (the default): every ready fixed drive, and <c>/</c>.</summary>
    public IList<string> Mounts { get; } = [];
}
