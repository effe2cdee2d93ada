namespace Monitoring.Stream.Store;

/// <summary>Where and how the local Arrow store keeps its files.</summary>
public sealed class ArrowFileStoreOptions
{
    /// <summary>The folder of the store (default <c>./data/windows</c>).</summary>
    public string Directory { get; set; } = Path.Combine("data", "windows");

    /// <summary>A file is closed and published once it holds this many bytes (default 64 MiB).</summary>
    public long MaxFileBytes { get; set; } = 64L << 20;

    /// <summary>A file is closed and published once it is this old (default 1 min).</summary>
    public TimeSpan MaxFileAge { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Published files older than this are deleted (default 24 h).</summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromHours(24);

    /// <summary>The oldest published files are deleted while the store holds more than this (default 1 GiB).</summary>
    public long MaxTotalBytes { get; set; } = 1L << 30;

    /// <summary>The clock that names files and drives rotation by age and retention (default the system clock; a pipeline passes its own).</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Checks every setting and throws <see cref="ArgumentException"/> (or a subclass) naming the first that is out of range.</summary>
    public void Validate()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(Directory, nameof(Directory));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxFileBytes, 1, nameof(MaxFileBytes));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(MaxFileAge, TimeSpan.Zero, nameof(MaxFileAge));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(Retention, TimeSpan.Zero, nameof(Retention));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxTotalBytes, 1, nameof(MaxTotalBytes));
        ArgumentNullException.ThrowIfNull(TimeProvider, nameof(TimeProvider));
    }
}
