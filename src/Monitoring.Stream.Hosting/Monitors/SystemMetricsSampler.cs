using System.Diagnostics;
using System.Globalization;
using Monitoring.Stream.Hosting.Instruments;

namespace Monitoring.Stream.Hosting.Monitors;

/// <summary>
/// The performance monitor: samples system and process CPU, memory, disk usage per mount and network
/// bytes per interface on an interval, and writes them into the engine as gauges. Linux figures come
/// from <c>/proc</c> and <see cref="DriveInfo"/> (statvfs); elsewhere, what .NET offers (process CPU and
/// memory, disks). A figure that is not available is not written — absent, never zero.
/// </summary>
public sealed class SystemMetricsSampler : IDisposable
{
    private readonly SystemMetricsOptions _options;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private readonly ITimer? _timer;
    private readonly MetricGauge _systemCpu;
    private readonly MetricGauge _processCpu;
    private readonly MetricGauge _memoryTotal;
    private readonly MetricGauge _memoryUsed;
    private readonly MetricGauge _memoryPercent;
    private readonly MetricGauge _workingSet;
    private readonly MetricGauge _gcHeap;
    private readonly MetricGauge _diskUsed;
    private readonly MetricGauge _diskPercent;
    private readonly MetricGauge _netReceived;
    private readonly MetricGauge _netSent;
    private readonly MetricGauge _netReceivedRate;
    private readonly MetricGauge _netSentRate;
    private (long Busy, long Total)? _previousCpu;
    private TimeSpan _previousProcessCpu;
    private long _previousTimestamp;
    private Dictionary<string, (double Received, double Sent)>? _previousNet;

    /// <summary>Creates the sampler; with <paramref name="start"/> it samples on the configured interval of <paramref name="time"/>.</summary>
    public SystemMetricsSampler(MetricsCollector collector, SystemMetricsOptions? options = null, TimeProvider? time = null, bool start = true)
    {
        ArgumentNullException.ThrowIfNull(collector);
        _options = options ?? new SystemMetricsOptions();
        if (_options.Interval <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(options), _options.Interval, "SystemMetricsOptions.Interval must be positive.");
        }

        _time = time ?? TimeProvider.System;
        _systemCpu = collector.CreateGauge("system_cpu_usage_percent", [], "Busy share of all cores.", "%");
        _processCpu = collector.CreateGauge("process_cpu_usage_percent", [], "This process's CPU time over the wall time of all cores.", "%");
        _memoryTotal = collector.CreateGauge("system_memory_total_bytes", [], "Physical memory.", "By");
        _memoryUsed = collector.CreateGauge("system_memory_used_bytes", [], "Physical memory in use (total less available).", "By");
        _memoryPercent = collector.CreateGauge("system_memory_usage_percent", [], "Physical memory in use.", "%");
        _workingSet = collector.CreateGauge("process_working_set_bytes", [], "Working set of this process.", "By");
        _gcHeap = collector.CreateGauge("process_gc_heap_bytes", [], "Bytes allocated on the GC heap.", "By");
        _diskUsed = collector.CreateGauge("system_disk_used_bytes", ["mount"], "Used bytes of a mounted file system.", "By");
        _diskPercent = collector.CreateGauge("system_disk_usage_percent", ["mount"], "Used share of a mounted file system.", "%");
        _netReceived = collector.CreateGauge("system_network_received_bytes_total", ["interface"], "Bytes received by an interface since boot.", "By");
        _netSent = collector.CreateGauge("system_network_sent_bytes_total", ["interface"], "Bytes sent by an interface since boot.", "By");
        _netReceivedRate = collector.CreateGauge("system_network_received_bytes_per_second", ["interface"], "Receive rate of an interface.", "By/s");
        _netSentRate = collector.CreateGauge("system_network_sent_bytes_per_second", ["interface"], "Send rate of an interface.", "By/s");
        _previousProcessCpu = Process.GetCurrentProcess().TotalProcessorTime;
        _previousTimestamp = _time.GetTimestamp();
        if (start)
        {
            _timer = _time.CreateTimer(static s => ((SystemMetricsSampler)s!).Sample(), this, _options.Interval, _options.Interval);
        }
    }

    /// <summary>The last sample taken, or null before the first.</summary>
    public SystemSample? LastSample { get; private set; }

    /// <summary>Takes one sample now, writes it into the engine and returns it.</summary>
    public SystemSample Sample()
    {
        lock (_gate)
        {
            long timestamp = _time.GetTimestamp();
            double elapsedSeconds = _time.GetElapsedTime(_previousTimestamp, timestamp).TotalSeconds;
            bool first = LastSample is null;
            _previousTimestamp = timestamp;

            double? systemCpu = null;
            if (ReadCpu() is (long busy, long total))
            {
                if (_previousCpu is (long prevBusy, long prevTotal) && total > prevTotal)
                {
                    systemCpu = 100.0 * (busy - prevBusy) / (total - prevTotal);
                }

                _previousCpu = (busy, total);
            }

            TimeSpan processCpu = Process.GetCurrentProcess().TotalProcessorTime;
            double? processCpuPercent = first || elapsedSeconds <= 0 ? null
                : 100.0 * (processCpu - _previousProcessCpu).TotalSeconds / (elapsedSeconds * Environment.ProcessorCount);
            _previousProcessCpu = processCpu;

            (double? memTotal, double? memUsed) = ReadMemory();
            var disks = ReadDisks();
            var network = ReadNetwork(first ? 0 : elapsedSeconds);
            var sample = new SystemSample
            {
                Time = _time.GetUtcNow(),
                SystemCpuPercent = systemCpu,
                ProcessCpuPercent = processCpuPercent,
                MemoryTotalBytes = memTotal,
                MemoryUsedBytes = memUsed,
                MemoryUsedPercent = memTotal > 0 ? 100.0 * memUsed / memTotal : null,
                ProcessWorkingSetBytes = Environment.WorkingSet,
                ProcessGcHeapBytes = GC.GetTotalMemory(forceFullCollection: false),
                Disks = disks,
                Network = network,
            };
            Write(sample);
            LastSample = sample;
            return sample;
        }
    }

    private void Write(SystemSample s)
    {
        static void Set(MetricGauge gauge, double? value, params ReadOnlySpan<string> labels)
        {
            if (value is double v)
            {
                gauge.Set(v, labels);
            }
        }

        Set(_systemCpu, s.SystemCpuPercent);
        Set(_processCpu, s.ProcessCpuPercent);
        Set(_memoryTotal, s.MemoryTotalBytes);
        Set(_memoryUsed, s.MemoryUsedBytes);
        Set(_memoryPercent, s.MemoryUsedPercent);
        Set(_workingSet, s.ProcessWorkingSetBytes);
        Set(_gcHeap, s.ProcessGcHeapBytes);
        foreach ((string mount, (double used, double _, double percent)) in s.Disks)
        {
            Set(_diskUsed, used, mount);
            Set(_diskPercent, percent, mount);
        }

        foreach ((string name, (double received, double sent, double? receivedRate, double? sentRate)) in s.Network)
        {
            Set(_netReceived, received, name);
            Set(_netSent, sent, name);
            Set(_netReceivedRate, receivedRate, name);
            Set(_netSentRate, sentRate, name);
        }
    }

    /// <summary>Busy and total jiffies of all cores from the first line of <c>/proc/stat</c>.</summary>
    private (long Busy, long Total)? ReadCpu()
    {
        string? line = ReadLines("stat")?.FirstOrDefault(l => l.StartsWith("cpu ", StringComparison.Ordinal));
        if (line is null)
        {
            return null;
        }

        // user nice system idle iowait irq softirq steal [guest guest_nice, already inside user and nice]. A line
        // that does not read as that (another kernel's, or damaged) makes the figure absent: the sampler runs on a
        // timer, where an exception would end the process.
        string[] fields = [.. line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Take(8)];
        long[] f = new long[fields.Length];
        for (int i = 0; i < fields.Length; i++)
        {
            if (!long.TryParse(fields[i], NumberStyles.None, CultureInfo.InvariantCulture, out f[i]))
            {
                return null;
            }
        }

        if (f.Length < 4)
        {
            return null;
        }

        long total = f.Sum();
        long idle = f[3] + (f.Length > 4 ? f[4] : 0);
        return (total - idle, total);
    }

    private (double? Total, double? Used) ReadMemory()
    {
        string[]? lines = ReadLines("meminfo");
        if (lines is null)
        {
            return (null, null);
        }

        double? Field(string name)
        {
            string? line = lines.FirstOrDefault(l => l.StartsWith(name + ":", StringComparison.Ordinal));
            string[]? f = line?.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return f is { Length: >= 2 } && long.TryParse(f[1], NumberStyles.None, CultureInfo.InvariantCulture, out long kib) ? 1024.0 * kib : null;
        }

        double? total = Field("MemTotal");
        double? available = Field("MemAvailable");
        return (total, total - available);
    }

    private Dictionary<string, (double UsedBytes, double TotalBytes, double UsedPercent)> ReadDisks()
    {
        var result = new Dictionary<string, (double, double, double)>(StringComparer.Ordinal);
        IEnumerable<DriveInfo> drives;
        try
        {
            drives = _options.Mounts.Count > 0
                ? _options.Mounts.Select(m => new DriveInfo(m))
                : DriveInfo.GetDrives().Where(d => d.DriveType == DriveType.Fixed || d.Name == "/");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return result;
        }

        foreach (DriveInfo drive in drives)
        {
            try
            {
                if (!drive.IsReady || drive.TotalSize <= 0)
                {
                    continue;
                }

                double total = drive.TotalSize;
                // Used as df counts it: total less free (free includes the blocks reserved for root).
                double used = total - drive.TotalFreeSpace;
                // df's percentage: used over what a normal user can have (used + available).
                double percent = 100.0 * used / (used + drive.AvailableFreeSpace);
                result[drive.Name] = (used, total, percent);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // A mount that vanished or is not readable is absent from this sample.
            }
        }

        return result;
    }

    private Dictionary<string, (double ReceivedBytes, double SentBytes, double? ReceivedPerSecond, double? SentPerSecond)> ReadNetwork(double elapsedSeconds)
    {
        var result = new Dictionary<string, (double, double, double?, double?)>(StringComparer.Ordinal);
        string[]? lines = ReadLines(Path.Combine("net", "dev"));
        if (lines is null)
        {
            return result;
        }

        var current = new Dictionary<string, (double Received, double Sent)>(StringComparer.Ordinal);
        foreach (string line in lines.Skip(2))
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0)
            {
                continue;
            }

            string name = line[..colon].Trim();
            string[] f = line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 9
                || !double.TryParse(f[0], NumberStyles.None, CultureInfo.InvariantCulture, out double received)
                || !double.TryParse(f[8], NumberStyles.None, CultureInfo.InvariantCulture, out double sent))
            {
                continue;   // a line that does not read as /proc/net/dev's: this interface is absent from the sample
            }

            current[name] = (received, sent);
            double? receivedRate = null, sentRate = null;
            if (elapsedSeconds > 0 && _previousNet is not null && _previousNet.TryGetValue(name, out var previous)
                && received >= previous.Received && sent >= previous.Sent)
            {
                receivedRate = (received - previous.Received) / elapsedSeconds;
                sentRate = (sent - previous.Sent) / elapsedSeconds;
            }

            result[name] = (received, sent, receivedRate, sentRate);
        }

        _previousNet = current;
        return result;
    }

    private string[]? ReadLines(string relative)
    {
        string path = Path.Combine(_options.ProcRoot, relative);
        try
        {
            return File.Exists(path) ? File.ReadAllLines(path) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Stops sampling.</summary>
    public void Dispose() => _timer?.Dispose();
}
