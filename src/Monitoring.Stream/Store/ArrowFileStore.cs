using System.Globalization;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Store;

/// <summary>
/// The embedded default sink: window batches appended to Arrow IPC files in a folder, rotated by size
/// and age, deleted by age and total size.
/// </summary>
/// <remarks>
/// <para>
/// Durability: <see cref="WriteAsync"/> returns only once the batch is on disk. Each batch is appended
/// to the open <c>*.arrow.partial</c> file and the file is flushed with <c>fsync</c> before the call
/// returns; a new file's name is made durable by flushing the folder. A file is renamed to
/// <c>*.arrow</c> once its footer is written and flushed, so a <c>.arrow</c> file is always complete.
/// </para>
/// <para>
/// Failures: a write that fails (a full disk, an I/O error) cuts the open file back to its last whole
/// batch and closes it; the next write starts a new file. The batches already acknowledged in the
/// closed file are published at once by recovery (the file is finished in place: its footer is
/// appended), or, if that fails too, after a later successful write, and at the latest when the
/// store next opens. A full disk throws <see cref="StoreDiskFullException"/> naming the folder, and
/// the counters below say what happened.
/// </para>
/// <para>
/// Opening: a partial file left by a crash gives back its whole batches as a published file; a
/// published file that fails the footer and schema check is moved into the <c>damaged</c> subfolder
/// and listed in <see cref="SetAsideFiles"/> with the reason, never read as data.
/// </para>
/// <para>
/// Thread safety: every member may be called from any thread; writes are serialized.
/// </para>
/// </remarks>
public sealed class ArrowFileStore : IWindowSink
{
    /// <summary>Extension of published files.</summary>
    public const string Extension = ".arrow";

    /// <summary>Extension of the file being written.</summary>
    public const string PartialExtension = ".arrow.partial";

    /// <summary>Name of the subfolder that damaged files are moved into.</summary>
    public const string DamagedFolderName = "damaged";

    /// <summary>Extension of the temporary copy made while recovering a partial file.</summary>
    private const string RecoveringExtension = ".arrow.recovering";

    private readonly Lock _gate = new();
    private readonly string _directory;
    private readonly long _maxFileBytes;
    private readonly TimeSpan _maxFileAge;
    private readonly TimeSpan _retention;
    private readonly long _maxTotalBytes;
    private readonly TimeProvider _time;
    private readonly List<string> _toRecover = [];
    private readonly List<SetAsideFile> _setAside = [];

    // Names (without extension) of the files this instance opened: its own windows, whatever became of the file
    // (published, or recovered after a failed write). Files found in the folder are an earlier run's.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> _openedHere = new(StringComparer.Ordinal);
    private FileStream? _stream;

    // The end of the space reserved in the open file (FileSpace), past its length until the writes reach it.
    private long _reservedEnd;
    private ArrowFileWriter? _writer;
    private string? _partialPath;
    private DateTimeOffset _openedAt;
    private long _durableLength;
    private int _batchesInFile;
    private int _sequence;
    private bool _completed;
    private bool _disposed;
    private long _filesPublished;
    private long _filesDeleted;
    private long _batchesWritten;
    private long _bytesWritten;
    private long _writeErrors;
    private long _diskFullErrors;
    private long _partialFilesRecovered;
    private long _batchesRecovered;
    private long _recoveredInPlace;
    private string? _lastError;

    /// <summary>
    /// Opens (creating if needed) the store folder: recovers the whole batches of partial files left by a
    /// crash and sets aside published files that fail the footer and schema check.
    /// </summary>
    /// <param name="options">The store settings, validated and copied: later changes to the object have no effect.</param>
    /// <param name="time">A clock that overrides <see cref="ArrowFileStoreOptions.TimeProvider"/>; null to use the options' clock.</param>
    public ArrowFileStore(ArrowFileStoreOptions options, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _directory = options.Directory;
        _maxFileBytes = options.MaxFileBytes;
        _maxFileAge = options.MaxFileAge;
        _retention = options.Retention;
        _maxTotalBytes = options.MaxTotalBytes;
        _time = time ?? options.TimeProvider;
        System.IO.Directory.CreateDirectory(_directory);
        foreach (string copy in System.IO.Directory.EnumerateFiles(_directory, "*" + RecoveringExtension))
        {
            // An interrupted recovery copy: its source partial file is still there and is recovered again below.
            File.Delete(copy);
        }

        foreach (string partial in System.IO.Directory.EnumerateFiles(_directory, "*" + PartialExtension).Order(StringComparer.Ordinal))
        {
            try
            {
                Recover(partial);
                PartialFilesRemoved++;
            }
#pragma warning disable CA1031 // Counted; the file waits in PendingRecoveries and is tried again after the next successful write.
            catch (Exception e)
#pragma warning restore CA1031
            {
                _ = Failure(e, "recover the batches of a partial file");
                _toRecover.Add(partial);
            }
        }

        foreach (string published in ListPublished())
        {
            try
            {
                string? problem = ArrowFileCheck.Problem(published);
                if (problem is not null)
                {
                    SetAside(published, problem);
                }
            }
#pragma warning disable CA1031 // A file that cannot even be checked or moved is counted and left where it is.
            catch (Exception e)
#pragma warning restore CA1031
            {
                _ = Failure(e, $"check or set aside the file '{Path.GetFileName(published)}'");
            }
        }
    }

    /// <inheritdoc />
    public string Name => "arrow-files";

    /// <summary>The store folder.</summary>
    public string Directory => _directory;

    /// <summary>The folder that damaged files are moved into.</summary>
    public string DamagedDirectory => Path.Combine(_directory, DamagedFolderName);

    /// <summary>Partial files found when the store opened and resolved then: recovered into a published file, or deleted when they held no whole batch (one that could not be resolved is in <see cref="PendingRecoveries"/>).</summary>
    public int PartialFilesRemoved { get; }

    /// <summary>Partial files whose whole batches were published by recovery (at open, or after a failed write).</summary>
    public long PartialFilesRecovered => Interlocked.Read(ref _partialFilesRecovered);

    /// <summary>Batches published by recovery from partial files.</summary>
    public long BatchesRecovered => Interlocked.Read(ref _batchesRecovered);

    /// <summary>Recoveries that finished the partial file in place (footer appended) rather than copying its batches; for tests.</summary>
    internal long RecoveredInPlace => Interlocked.Read(ref _recoveredInPlace);

    /// <summary>Files closed and published by this instance (recovered files included).</summary>
    public long FilesPublished => Interlocked.Read(ref _filesPublished);

    /// <summary>Files deleted by retention.</summary>
    public long FilesDeleted => Interlocked.Read(ref _filesDeleted);

    /// <summary>Batches acknowledged: written and flushed to disk.</summary>
    public long BatchesWritten => Interlocked.Read(ref _batchesWritten);

    /// <summary>Bytes of acknowledged batches (Arrow IPC, as on disk).</summary>
    public long BytesWritten => Interlocked.Read(ref _bytesWritten);

    /// <summary>Failed writes, publications, recoveries and retention passes.</summary>
    public long WriteErrors => Interlocked.Read(ref _writeErrors);

    /// <summary>Failures caused by a full disk (or an exhausted quota), also counted in <see cref="WriteErrors"/>.</summary>
    public long DiskFullErrors => Interlocked.Read(ref _diskFullErrors);

    /// <summary>The last failure, as "type: message", or null when there was none.</summary>
    public string? LastError => Volatile.Read(ref _lastError);

    /// <summary>Closed partial files whose acknowledged batches still wait to be published by recovery.</summary>
    public int PendingRecoveries
    {
        get
        {
            lock (_gate)
            {
                return _toRecover.Count;
            }
        }
    }

    /// <summary>Damaged files moved into <see cref="DamagedDirectory"/> when the store opened.</summary>
    public int FilesSetAside
    {
        get
        {
            lock (_gate)
            {
                return _setAside.Count;
            }
        }
    }

    /// <summary>The damaged files moved aside, with the reason for each.</summary>
    public IReadOnlyList<SetAsideFile> SetAsideFiles
    {
        get
        {
            lock (_gate)
            {
                return [.. _setAside];
            }
        }
    }

    /// <summary>
    /// Whether <paramref name="path"/> (a published file of this folder) holds windows this instance wrote, as opposed
    /// to an earlier run's (or another process's) file found in the folder. A query that also holds this instance's
    /// recent windows in memory reads the others whole and this instance's only for the windows memory no longer has.
    /// </summary>
    public bool OpenedHere(string path) => _openedHere.ContainsKey(Path.GetFileNameWithoutExtension(path));

    /// <summary>Published files, oldest first.</summary>
    public IReadOnlyList<string> PublishedFiles() => ListPublished();

    private List<string> ListPublished() =>
        [.. System.IO.Directory.EnumerateFiles(_directory, "*" + Extension)
            .Where(f => f.EndsWith(Extension, StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)];

    /// <summary>Appends the batch to the open file and flushes it to disk; returns once the batch is durable.</summary>
    /// <exception cref="StoreDiskFullException">The disk is full; the batch is not stored.</exception>
    /// <exception cref="InvalidOperationException">The store was completed or disposed.</exception>
    public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        // The write itself is synchronous (it returns once the batch is on disk), but its failures (a full disk, a
        // folder that became read-only, a disposed store) come back in the returned task, as from any asynchronous
        // write, not thrown at the call.
        try
        {
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (_completed)
                {
                    throw new InvalidOperationException($"The Arrow store '{_directory}' was completed: no batch can be written after CompleteAsync.");
                }

                WriteLocked(batch.RecordBatch);

                // Only after a write succeeded: while the disk is full, recovery would fail too, and trying
                // it before every retried write would read whole files for nothing.
                RetryRecoveriesLocked();
                if (_stream!.Length >= _maxFileBytes || _time.GetUtcNow() - _openedAt >= _maxFileAge)
                {
                    // The batch is durable in the partial file whatever happens here: a failed publication
                    // leaves that file to recovery and is counted, but does not fail this write.
                    TryPublishLocked();
                }
            }
        }
        catch (Exception e)
        {
            return ValueTask.FromException(e);
        }

        return ValueTask.CompletedTask;
    }

    private void WriteLocked(RecordBatch batch)
    {
        try
        {
            if (_writer is null)
            {
                OpenLocked(batch.Schema);
            }

            // PERF: the batch's blocks reserved in one call (FileSpace); a hint only, whatever its outcome.
            FileSpace.ReserveFor(_stream!.SafeFileHandle, _durableLength, batch, ref _reservedEnd);

            _writer!.WriteRecordBatch(batch);
            _stream!.Flush(flushToDisk: true);
        }
        catch (Exception e)
        {
            CloseAfterFailureLocked();
            Exception failure = Failure(e, "write a window batch");
            if (ReferenceEquals(failure, e))
            {
                throw;
            }

            throw failure;
        }

        long length = _stream.Length;
        Interlocked.Increment(ref _batchesWritten);
        Interlocked.Add(ref _bytesWritten, length - _durableLength);
        _durableLength = length;
        _batchesInFile++;
    }

    private void OpenLocked(Schema schema)
    {
        _openedAt = _time.GetUtcNow();
        string name = string.Create(CultureInfo.InvariantCulture, $"windows-{_openedAt.UtcDateTime:yyyyMMdd'T'HHmmss'.'fff'Z'}-{Environment.ProcessId}-{_sequence++:D6}");
        _partialPath = Path.Combine(_directory, name + PartialExtension);
        _openedHere[name] = 0;
        _durableLength = 0;
        _reservedEnd = 0;
        _batchesInFile = 0;

        // Unbuffered: every byte the Arrow writer hands over goes to the OS at once, so after a failed
        // write nothing is left in a buffer that a later flush or dispose would try (and fail) to write.
        _stream = new FileStream(_partialPath, FileMode.CreateNew, FileAccess.Write, FileShare.Read, bufferSize: 0);
        _writer = new ArrowFileWriter(_stream, schema, leaveOpen: true);
        DirectorySync.Flush(_directory);
    }

    /// <summary>
    /// Closes the open file after a failed write or publication: cuts it back to its last whole batch
    /// (which also frees the space a torn batch took) and leaves it to recovery, or deletes it when it
    /// holds no acknowledged batch. Never throws.
    /// </summary>
    private void CloseAfterFailureLocked()
    {
        string? path = _partialPath;
        int batches = _batchesInFile;
        if (_stream is not null)
        {
            try
            {
                _stream.SetLength(_durableLength);
                _stream.Flush(flushToDisk: true);
            }
#pragma warning disable CA1031 // Best effort: recovery ignores a torn tail anyway.
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        }

        DisposeQuietly(_writer);
        DisposeQuietly(_stream);
        _writer = null;
        _stream = null;
        _partialPath = null;
        _durableLength = 0;
        _batchesInFile = 0;
        if (path is null)
        {
            return;
        }

        if (batches > 0)
        {
            // Finishing in place needs only the footer's bytes, and cutting the torn batch off has
            // usually freed more than that: publish the acknowledged batches now if possible.
            try
            {
                Recover(path);
            }
#pragma warning disable CA1031 // Counted; retried after the next successful write, and when the store next opens.
            catch (Exception e)
#pragma warning restore CA1031
            {
                _ = Failure(e, "recover the batches of a closed partial file");
                _toRecover.Add(path);
            }
        }
        else
        {
            try
            {
                File.Delete(path);
            }
#pragma warning disable CA1031 // A partial file without batches that cannot be deleted now is deleted when the store next opens.
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        }
    }

    private static void DisposeQuietly(IDisposable? disposable)
    {
        try
        {
            disposable?.Dispose();
        }
#pragma warning disable CA1031 // Closing after a failure: the failure is already reported.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    /// <summary>Publishes the open file, reporting (not throwing) a failure, after which the file is left to recovery.</summary>
    private void TryPublishLocked()
    {
        try
        {
            PublishLocked();
        }
#pragma warning disable CA1031 // Counted and kept in LastError; the data stays on disk for recovery.
        catch (Exception e)
#pragma warning restore CA1031
        {
            CloseAfterFailureLocked();
            _ = Failure(e, "publish a file");
        }
    }

    /// <summary>Writes the footer, makes the file durable and publishes it under its final name.</summary>
    private void PublishLocked()
    {
        if (_writer is null)
        {
            return;
        }

        _writer.WriteEnd();
        FileSpace.ReleaseUnwritten(_stream!, _reservedEnd);
        _stream!.Flush(flushToDisk: true);
        _writer.Dispose();
        _stream.Dispose();
        _writer = null;
        _stream = null;
        string partialPath = _partialPath!;
        File.Move(partialPath, FinalPath(partialPath));
        _partialPath = null;
        DirectorySync.Flush(_directory);
        Interlocked.Increment(ref _filesPublished);
        ApplyRetentionLocked();
    }

    private static string FinalPath(string partialPath) => partialPath[..^PartialExtension.Length] + Extension;

    private void RetryRecoveriesLocked()
    {
        for (int i = 0; i < _toRecover.Count;)
        {
            try
            {
                Recover(_toRecover[i]);
                _toRecover.RemoveAt(i);
            }
#pragma warning disable CA1031 // Counted; retried on the next write, and when the store next opens.
            catch (Exception e)
#pragma warning restore CA1031
            {
                _ = Failure(e, "recover the batches of a closed partial file");
                i++;
            }
        }
    }

    /// <summary>
    /// Publishes the whole batches of a partial file under the name it would have had: in place, by
    /// appending the footer (a few hundred bytes, so it works on a nearly full disk), or, when the
    /// batches read back would not re-create the file's layout, through a temporary copy. Deletes a
    /// partial file that holds no whole batch.
    /// </summary>
    private void Recover(string partialPath)
    {
        string finalPath = FinalPath(partialPath);
        if (File.Exists(finalPath))
        {
            // A recovery that published the copy and stopped before deleting the source.
            File.Delete(partialPath);
            return;
        }

        int finished = ArrowFileCheck.FinishInPlace(partialPath);
        if (finished == 0)
        {
            File.Delete(partialPath);
            DirectorySync.Flush(_directory);
            return;
        }

        if (finished > 0)
        {
            File.Move(partialPath, finalPath);
            Interlocked.Increment(ref _recoveredInPlace);
        }
        else
        {
            finished = CopyWholeBatches(partialPath, finalPath);
            File.Delete(partialPath);
            if (finished == 0)
            {
                DirectorySync.Flush(_directory);
                return;
            }
        }

        DirectorySync.Flush(_directory);
        Interlocked.Increment(ref _partialFilesRecovered);
        Interlocked.Add(ref _batchesRecovered, finished);
        Interlocked.Increment(ref _filesPublished);
    }

    /// <summary>Publishes the whole batches of a partial file as a new file at <paramref name="finalPath"/>, through a temporary copy.</summary>
    private static int CopyWholeBatches(string partialPath, string finalPath)
    {
        (Schema? schema, List<RecordBatch> batches) = ArrowFileCheck.CompleteBatches(partialPath);
        try
        {
            if (schema is null || batches.Count == 0)
            {
                return 0;
            }

            string copyPath = partialPath[..^PartialExtension.Length] + RecoveringExtension;
            try
            {
                using (var stream = new FileStream(copyPath, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0))
                using (var writer = new ArrowFileWriter(stream, schema, leaveOpen: true))
                {
                    foreach (RecordBatch batch in batches)
                    {
                        writer.WriteRecordBatch(batch);
                    }

                    writer.WriteEnd();
                    stream.Flush(flushToDisk: true);
                }

                File.Move(copyPath, finalPath);
            }
            catch
            {
                File.Delete(copyPath);
                throw;
            }

            return batches.Count;
        }
        finally
        {
            foreach (RecordBatch batch in batches)
            {
                batch.Dispose();
            }
        }
    }

    private void SetAside(string path, string reason)
    {
        string folder = DamagedDirectory;
        System.IO.Directory.CreateDirectory(folder);
        string name = Path.GetFileName(path);
        string target = Path.Combine(folder, name);
        for (int n = 1; File.Exists(target); n++)
        {
            target = Path.Combine(folder, string.Create(CultureInfo.InvariantCulture, $"{name}.{n}"));
        }

        File.Move(path, target);
        try
        {
            File.WriteAllText(target + ".reason.txt", reason + Environment.NewLine);
        }
#pragma warning disable CA1031 // The note is for people; the move, the list and the counter are what matter.
        catch (Exception)
#pragma warning restore CA1031
        {
        }

        DirectorySync.Flush(_directory);
        lock (_gate)
        {
            _setAside.Add(new SetAsideFile(path, target, reason));
        }
    }

    private void ApplyRetentionLocked()
    {
        try
        {
            DateTimeOffset cutoff = _time.GetUtcNow() - _retention;
            List<FileInfo> files = [.. ListPublished().Select(f => new FileInfo(f))];
            long total = files.Sum(f => f.Length);
            foreach (FileInfo file in files)
            {
                if (CreatedAt(file) >= cutoff && total <= _maxTotalBytes)
                {
                    break;
                }

                total -= file.Length;
                file.Delete();
                _openedHere.TryRemove(Path.GetFileNameWithoutExtension(file.Name), out _);
                Interlocked.Increment(ref _filesDeleted);
            }
        }
#pragma warning disable CA1031 // Retention is retried after the next publication; the failure is counted.
        catch (Exception e)
#pragma warning restore CA1031
        {
            _ = Failure(e, "apply retention");
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

    /// <summary>Counts a failure, keeps it as the last error, and gives the exception to throw: a full disk names the folder.</summary>
    private Exception Failure(Exception e, string action)
    {
        Interlocked.Increment(ref _writeErrors);
        Exception result = e;
        if (StoreDiskFullException.IsDiskFull(e))
        {
            Interlocked.Increment(ref _diskFullErrors);
            result = e as StoreDiskFullException ?? StoreDiskFullException.For(_directory, action, e);
        }

        Volatile.Write(ref _lastError, $"{result.GetType().Name}: {result.Message}");
        return result;
    }

    /// <summary>Publishes the open file and the batches of any closed partial file; later writes throw <see cref="InvalidOperationException"/>.</summary>
    public ValueTask CompleteAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (_completed || _disposed)
            {
                return ValueTask.CompletedTask;
            }

            _completed = true;
            RetryRecoveriesLocked();
            try
            {
                PublishLocked();
            }
            catch (Exception e)
            {
                CloseAfterFailureLocked();
                Exception failure = Failure(e, "publish the last file");
                if (ReferenceEquals(failure, e))
                {
                    throw;
                }

                throw failure;
            }
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>Publishes the open file if <see cref="CompleteAsync"/> did not; never throws, and may be called more than once.</summary>
    public ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return ValueTask.CompletedTask;
            }

            _disposed = true;
            if (!_completed)
            {
                RetryRecoveriesLocked();
                TryPublishLocked();
            }
        }

        return ValueTask.CompletedTask;
    }
}
