using System.Globalization;
using Apache.Arrow.Ipc;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Store;

/// <summary>
/// The embedded default sink: window batches appended to Arrow IPC files in a folder, rotated by size
/// and age, deleted by age and total size.
/// </summary>
/// <remarks>
/// A file is written as <c>*.arrow.partial</c> and renamed to <c>*.arrow</c> only after its footer is
/// written and flushed to disk, so a <c>.arrow</c> file is always complete and valid: a process killed
/// mid-write leaves at most a partial file, which the next start deletes (and counts).
/// </remarks>
public sealed class ArrowFileStore : IWindowSink
{
    /// <summary>Extension of published files.</summary>
    public const string Extension = ".arrow";

    /// <summary>Extension of the file being written.</summary>
    public const string PartialExtension = ".arrow.partial";

    private readonly ArrowFileStoreOptions _options;
    private readonly TimeProvider _time;
    private FileStream? _stream;
    private ArrowFileWriter? _writer;
    private string? _partialPath;
    private DateTimeOffset _openedAt;
    private int _sequence;
    private long _filesPublished;
    private long _filesDeleted;

    /// <summary>Opens (creating if needed) the store folder and removes partial files left by a crash.</summary>
    public ArrowFileStore(ArrowFileStoreOptions options, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrWhiteSpace(options.Directory);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxFileBytes, 1, nameof(options.MaxFileBytes));
        _options = options;
        _time = time ?? TimeProvider.System;
        System.IO.Directory.CreateDirectory(options.Directory);
        foreach (string partial in System.IO.Directory.EnumerateFiles(options.Directory, "*" + PartialExtension))
        {
            File.Delete(partial);
            PartialFilesRemoved++;
        }
    }

    /// <inheritdoc />
    public string Name => "arrow-files";

    /// <summary>The store folder.</summary>
    public string Directory => _options.Directory;

    /// <summary>Partial files found and deleted when the store opened.</summary>
    public int PartialFilesRemoved { get; }

    /// <summary>Files closed and published by this instance.</summary>
    public long FilesPublished => Interlocked.Read(ref _filesPublished);

    /// <summary>Files deleted by retention.</summary>
    public long FilesDeleted => Interlocked.Read(ref _filesDeleted);

    /// <summary>Published files, oldest first.</summary>
    public IReadOnlyList<string> PublishedFiles() =>
        [.. System.IO.Directory.EnumerateFiles(_options.Directory, "*" + Extension).Order(StringComparer.Ordinal)];

    /// <inheritdoc />
    public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (_writer is null)
        {
            Open(batch);
        }

        _writer!.WriteRecordBatch(batch.RecordBatch);
        if (_stream!.Length >= _options.MaxFileBytes || _time.GetUtcNow() - _openedAt >= _options.MaxFileAge)
        {
            Publish();
        }

        return ValueTask.CompletedTask;
    }

    private void Open(WindowBatch batch)
    {
        _openedAt = _time.GetUtcNow();
        string name = string.Create(CultureInfo.InvariantCulture, $"windows-{_openedAt.UtcDateTime:yyyyMMdd'T'HHmmss'.'fff'Z'}-{Environment.ProcessId}-{_sequence++:D6}");
        _partialPath = Path.Combine(_options.Directory, name + PartialExtension);
        _stream = new FileStream(_partialPath, FileMode.CreateNew, FileAccess.Write, FileShare.Read, 1 << 16);
        _writer = new ArrowFileWriter(_stream, batch.RecordBatch.Schema, leaveOpen: true);
    }

    /// <summary>Writes the footer, makes the file durable and publishes it under its final name.</summary>
    private void Publish()
    {
        if (_writer is null)
        {
            return;
        }

        _writer.WriteEnd();
        _writer.Dispose();
        _stream!.Flush(flushToDisk: true);
        _stream.Dispose();
        string finalPath = _partialPath![..^PartialExtension.Length] + Extension;
        File.Move(_partialPath, finalPath);
        _writer = null;
        _stream = null;
        _partialPath = null;
        Interlocked.Increment(ref _filesPublished);
        ApplyRetention();
    }

    private void ApplyRetention()
    {
        DateTimeOffset cutoff = _time.GetUtcNow() - _options.Retention;
        var files = new DirectoryInfo(_options.Directory).GetFiles("*" + Extension).OrderBy(f => f.Name, StringComparer.Ordinal).ToList();
        long total = files.Sum(f => f.Length);
        foreach (FileInfo file in files)
        {
            if (CreatedAt(file) >= cutoff && total <= _options.MaxTotalBytes)
            {
                break;
            }

            total -= file.Length;
            file.Delete();
            Interlocked.Increment(ref _filesDeleted);
        }
    }

    /// <summary>When a file was opened: from its name (the store's own clock), else its modification time.</summary>
    private static DateTimeOffset CreatedAt(FileInfo file)
    {
        // windows-yyyyMMddTHHmmss.fffZ-...
        const string Format = "yyyyMMdd'T'HHmmss'.'fff'Z'";
        string name = file.Name;
        const int Prefix = 8; // "windows-"
        const int Length = 20; // yyyyMMddTHHmmss.fffZ
        if (name.Length >= Prefix + Length && DateTimeOffset.TryParseExact(name.AsSpan(Prefix, Length), Format, CultureInfo.InvariantCulture,
            DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out DateTimeOffset opened))
        {
            return opened;
        }

        return new DateTimeOffset(file.LastWriteTimeUtc, TimeSpan.Zero);
    }

    /// <inheritdoc />
    public ValueTask CompleteAsync(CancellationToken cancellationToken)
    {
        Publish();
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        Publish();
        return ValueTask.CompletedTask;
    }
}
