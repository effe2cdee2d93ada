namespace Monitoring.Stream.Kafka.Tests.Support;

/// <summary>Locations inside the repository, found from the test assembly's folder.</summary>
internal static class RepositoryPaths
{
    public static string Root { get; } = FindRoot();

    public static string Interop => Path.Combine(Root, "tests", "interop");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Monitoring.Stream.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("Monitoring.Stream.sln not found above " + AppContext.BaseDirectory);
    }
}
