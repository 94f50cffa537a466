//! piku-receive: everything git. Its modes (serve, checkout, activate,
//! verify, destroy) are the subcommands below; `piku-receive --help` and
//! `piku-receive <mode> --help` print their help.

use argh::FromArgs;
use fs_err as fs;
use piku::envfile::{self, Env};
use piku::error::{Error, Result};
use piku::release::{self, Release};
use piku::{AppName, Root, atomic, output, paths};
use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

const ZERO_ID: &str = "0000000000000000000000000000000000000000";
const DEPLOY_BRANCH_FILE: &str = "piku-deploy-branch";

/// Everything git for piku: hand pushes and clones to stock git, turn a pushed
/// commit into a release tree, switch the live release.
#[derive(FromArgs)]
#[argh(
    help_triggers("-h", "--help"),
    example = "{command_name} checkout myapp < ref-lines\n{command_name} activate myapp 20240101-120000-5f3c2a1",
    error_code(1, "the work failed (the message says why and what to do)"),
    error_code(2, "usage error: nothing was done")
)]
struct Args {
    #[argh(subcommand)]
    mode: Mode,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Mode {
    Serve(Serve),
    Checkout(Checkout),
    Activate(Activate),
    Verify(Verify),
    Destroy(Destroy),
}

/// the ssh side of git push and clone: hand the protocol to stock git.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "serve",
    help_triggers("-h", "--help"),
    example = "{command_name} git-receive-pack myapp",
    note = "A push to a new app creates repos/<app> first (bare, with core.hooksPath set to piku's hooks)."
)]
struct Serve {
    /// git-receive-pack (a push) or git-upload-pack (a clone or fetch)
    #[argh(positional)]
    verb: GitVerb,
    /// the app
    #[argh(positional)]
    app: String,
}

/// write the pushed commit as a new release tree and print its id.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "checkout",
    help_triggers("-h", "--help"),
    example = "{command_name} myapp < ref-lines",
    note = "In the post-receive hook, with its \"old new ref\" lines on stdin: picks the deploy branch and writes its commit into releases/<app>/<id>/. Prints nothing when there is nothing to deploy (another branch, a deleted ref, already live). By hand (no stdin): the deploy branch's current commit."
)]
struct Checkout {
    /// the app
    #[argh(positional)]
    app: String,
}

/// make a release live: point apps/<app> at it.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "activate",
    help_triggers("-h", "--help"),
    example = "{command_name} myapp 20240101-120000-5f3c2a1",
    note = "Switches the apps/<app> symlink atomically, notes LAST_LIVE in <id>.release and prunes old releases."
)]
struct Activate {
    /// the app
    #[argh(positional)]
    app: String,
    /// the release id (a directory in releases/<app>/)
    #[argh(positional)]
    release: String,
}

/// refuse a push whose Procfile or ENV does not parse.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "verify",
    help_triggers("-h", "--help"),
    example = "{command_name} myapp < ref-lines",
    note = "In the pre-receive hook, with its \"old new ref\" lines on stdin; exits 1 with the reason, which git shows the pusher."
)]
struct Verify {
    /// the app
    #[argh(positional)]
    app: String,
}

/// remove apps/<app>, releases/<app> and repos/<app>.
#[derive(FromArgs)]
#[argh(subcommand, name = "destroy", help_triggers("-h", "--help"), example = "{command_name} myapp")]
struct Destroy {
    /// the app
    #[argh(positional)]
    app: String,
}

/// The two git services a client asks ssh for.
enum GitVerb {
    ReceivePack,
    UploadPack,
}

impl std::str::FromStr for GitVerb {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "git-receive-pack" => Ok(GitVerb::ReceivePack),
            "git-upload-pack" => Ok(GitVerb::UploadPack),
            _ => Err("expected git-receive-pack or git-upload-pack".into()),
        }
    }
}

fn main() -> ExitCode {
    let args: Args = piku::cli::parse();
    output::run("piku-receive", || {
        let root = Root::from_env();
        match args.mode {
            Mode::Serve(a) => serve(&root, a.verb, &AppName::parse(&a.app)?),
            Mode::Checkout(a) => receive(&root, &AppName::parse(&a.app)?),
            Mode::Activate(a) => activate(&root, &AppName::parse(&a.app)?, &a.release),
            Mode::Verify(a) => verify(&root, &AppName::parse(&a.app)?),
            Mode::Destroy(a) => destroy(&root, &AppName::parse(&a.app)?),
        }
    })
}

/// The ssh side of `git push` / `git clone`: exec stock git on the app's bare repo.
fn serve(root: &Root, verb: GitVerb, app: &AppName) -> Result<()> {
    let repo = root.repo_dir(app);
    if let GitVerb::ReceivePack = verb {
        let hooks = paths::hooks_dir();
        if !hooks.join("post-receive").is_file() {
            return Err(Error::new(format!(
                "the piku hook is not installed at {}; re-run install.sh (or set PIKU_HOOKS_DIR)",
                hooks.display()
            )));
        }
        if !repo.join("HEAD").is_file() {
            fs::create_dir_all(root.dir("repos"))?;
            piku::process::run_captured(Command::new("git").args(["init", "--quiet", "--bare"]).arg(&repo), "git init")?;
        }
        // Set on every push, so repos made by piku.py switch to our hook in place.
        piku::process::run_captured(
            Command::new("git").arg("--git-dir").arg(&repo).args(["config", "core.hooksPath"]).arg(&hooks),
            "git config core.hooksPath",
        )?;
    } else if !repo.join("HEAD").is_file() {
        return Err(Error::new(format!("app '{app}' not found; push to it first")));
    }
    // exec, so git owns stdin/stdout. A pack larger than PIKU_MAX_PUSH_MB is
    // refused while it arrives, before any object is written (receive-pack
    // passes the bound to index-pack).
    let mut git = Command::new("git");
    let sub = match verb {
        GitVerb::ReceivePack => {
            git.arg("-c").arg(format!("receive.maxInputSize={}", piku::limits::max_push_bytes(root)?));
            "receive-pack"
        }
        GitVerb::UploadPack => "upload-pack",
    };
    let err = git.arg(sub).arg(&repo).exec();
    Err(Error::new(format!("could not run git {sub}: {err}")))
}

/// Hook mode: from the pushed refs to a new release tree (or nothing).
fn receive(root: &Root, app: &AppName) -> Result<()> {
    let repo_path = root.repo_dir(app);
    if !repo_path.join("HEAD").is_file() {
        return Err(Error::new(format!("app '{app}' has no repository at {}", repo_path.display())));
    }
    let repo = gix::open_opts(&repo_path, gix::open::Options::isolated())
        .map_err(|e| Error::new(format!("cannot open the repository of '{app}': {e}")))?;

    let mut branch = deploy_branch(root, app)?;
    let mut target: Option<(String, String)> = None; // (commit, ref)
    let stdin = std::io::stdin();
    let pushed: Vec<String> = if stdin.is_terminal() { vec![] } else { ref_lines()? };
    for line in &pushed {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [_old, new, refname] = parts.as_slice() else { continue };
        let Some(name) = refname.strip_prefix("refs/heads/") else {
            output::step(format!("{refname} received; only branches are deployed"));
            continue;
        };
        if branch.is_none() {
            output::step(format!("Deploy branch of '{app}' is '{name}' (the first branch pushed; set DEPLOY_BRANCH to change it)"));
            atomic::write_file(&repo_path.join(DEPLOY_BRANCH_FILE), format!("{name}\n").as_bytes(), 0o644)?;
            // So `git clone piku@server:app` checks out the deployed branch.
            atomic::write_file(&repo_path.join("HEAD"), format!("ref: refs/heads/{name}\n").as_bytes(), 0o644)?;
            branch = Some(name.to_string());
        }
        if branch.as_deref() != Some(name) {
            output::step(format!(
                "Branch '{name}' received, not deployed: '{app}' deploys '{}' (set DEPLOY_BRANCH to change it)",
                branch.as_deref().unwrap_or("")
            ));
        } else if *new == ZERO_ID {
            output::step(format!("Branch '{name}' deleted; nothing to deploy, the live release keeps serving"));
        } else {
            target = Some((new.to_string(), refname.to_string()));
        }
    }
    if pushed.is_empty() {
        // By hand: the deploy branch's current commit.
        let Some(name) = branch else {
            output::step(format!("'{app}' has no deploy branch yet; push one"));
            return Ok(());
        };
        let refname = format!("refs/heads/{name}");
        let mut reference = repo
            .find_reference(refname.as_str())
            .map_err(|e| Error::new(format!("the deploy branch '{name}' of '{app}' does not exist: {e}")))?;
        let id = reference.peel_to_id().map_err(|e| Error::new(format!("cannot resolve {refname}: {e}")))?;
        target = Some((id.to_string(), refname));
    }
    let Some((commit_hex, refname)) = target else { return Ok(()) };

    if let Some(live) = Release::live(root, app)? {
        let facts = envfile::read_literal(&live.fact_file("release"))?.unwrap_or_default();
        if facts.get("COMMIT").map(String::as_str) == Some(commit_hex.as_str()) {
            output::step(format!("Commit {} is already live as release {}; nothing to deploy", &commit_hex[..7], live.id));
            return Ok(());
        }
    }

    output::step(format!("Deploying app '{app}' ({} at {})", refname.trim_start_matches("refs/heads/"), &commit_hex[..7]));
    let oid = gix::ObjectId::from_hex(commit_hex.as_bytes()).map_err(|e| Error::new(format!("bad commit id {commit_hex}: {e}")))?;
    let commit = repo.find_commit(oid).map_err(|e| Error::new(format!("commit {commit_hex} not found in '{app}': {e}")))?;
    let tree = commit.tree().map_err(|e| Error::new(format!("cannot read the tree of {commit_hex}: {e}")))?;
    let message = commit.message_raw_sloppy().to_string();

    let id = release::next_id(root, app, &commit_hex);
    let releases = root.releases_dir(app);
    let staging = releases.join(format!(".{id}.tmp"));
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir_all(&staging)?;
    let mut submodules = Vec::new();
    if let Err(e) = write_tree(&repo, &tree, &staging, "", &mut submodules) {
        // A full disk or a crash of git's objects: leave no half-written tree behind.
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    for path in &submodules {
        output::warn(format!("submodule '{path}' is not checked out (submodules are not supported yet)"));
    }
    let dir = releases.join(&id);
    fs::rename(&staging, &dir)?;
    let mut facts = Env::new();
    facts.insert("COMMIT".into(), commit_hex.clone());
    facts.insert("REF".into(), refname);
    facts.insert("DATE".into(), now_secs().to_string());
    facts.insert("MESSAGE".into(), message.lines().next().unwrap_or("").trim().to_string());
    atomic::write_file(&releases.join(format!("{id}.release")), envfile::render(&facts)?.as_bytes(), 0o644)?;
    let data = root.data_dir(app);
    fs::create_dir_all(&data)?;
    output::data(&id);
    Ok(())
}

/// DEPLOY_BRANCH from the user's ENV, else the branch recorded at the first push.
fn deploy_branch(root: &Root, app: &AppName) -> Result<Option<String>> {
    let mut user = Env::new();
    if let Err(e) = envfile::read_into(&mut user, &root.user_env_file(app), true) {
        // The deploy reports this in full; here it only hides DEPLOY_BRANCH.
        output::warn(format!("the config of '{app}' does not parse ({}); using the recorded deploy branch", e.message));
    }
    if let Some(b) = user.get("DEPLOY_BRANCH").filter(|b| !b.is_empty()) {
        return Ok(Some(b.trim_start_matches("refs/heads/").to_string()));
    }
    match fs::read_to_string(root.repo_dir(app).join(DEPLOY_BRANCH_FILE)) {
        Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        _ => Ok(None),
    }
}

/// Write a git tree into `dir`: files with their modes, symlinks, directories;
/// submodules (gitlinks) become empty directories and are reported.
fn write_tree(repo: &gix::Repository, tree: &gix::Tree<'_>, dir: &Path, prefix: &str, submodules: &mut Vec<String>) -> Result<()> {
    use gix::object::tree::EntryKind;
    use std::os::unix::fs::PermissionsExt;
    let decoded = tree.decode().map_err(|e| Error::new(format!("corrupt tree {}: {e}", tree.id)))?;
    for entry in decoded.entries {
        let name = entry.filename.to_string();
        if name.is_empty() || name == "." || name == ".." || name == ".git" || name.contains('/') || name.contains('\0') {
            return Err(Error::new(format!("the commit contains an unsafe path {:?}; refusing to check it out", format!("{prefix}{name}"))));
        }
        let path = dir.join(&name);
        let oid = entry.oid.to_owned();
        match entry.mode.kind() {
            EntryKind::Tree => {
                fs::create_dir(&path)?;
                let sub = repo.find_tree(oid).map_err(|e| Error::new(format!("missing tree {oid}: {e}")))?;
                write_tree(repo, &sub, &path, &format!("{prefix}{name}/"), submodules)?;
            }
            kind @ (EntryKind::Blob | EntryKind::BlobExecutable) => {
                let blob = repo.find_blob(oid).map_err(|e| Error::new(format!("missing blob {oid}: {e}")))?;
                fs::write(&path, &blob.data)?;
                piku::mapped::note_read(blob.data.len());
                let mode = if kind == EntryKind::BlobExecutable { 0o755 } else { 0o644 };
                fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            }
            EntryKind::Link => {
                let blob = repo.find_blob(oid).map_err(|e| Error::new(format!("missing blob {oid}: {e}")))?;
                let target = std::ffi::OsStr::new(std::str::from_utf8(&blob.data).unwrap_or_default());
                fs::os::unix::fs::symlink(target, &path)?;
            }
            EntryKind::Commit => {
                fs::create_dir(&path)?;
                submodules.push(format!("{prefix}{name}"));
            }
        }
    }
    Ok(())
}

/// Make a release live: switch `apps/<app>` to it, then keep only recent releases.
fn activate(root: &Root, app: &AppName, id: &str) -> Result<()> {
    let rel = Release::open(root, app, id)?;
    let link = root.app_dir(app);
    if link.is_dir() && !link.is_symlink() {
        // A tree left by piku.py: keep it as a release instead of deleting it.
        let kept = root.releases_dir(app).join(format!("{}-pikupy", release::utc_stamp(now_secs())));
        fs::rename(&link, &kept)?;
        output::step(format!("Kept piku.py's tree of '{app}' as {}", kept.display()));
    }
    // The release being replaced keeps serving while it drains: never pruned now.
    let previous = release::live_id(root, app);
    atomic::replace_symlink(&Path::new("../releases").join(app.as_str()).join(&rel.id), &link)?;
    // `releases` tells a release that has been live from one that failed.
    let facts_file = rel.fact_file("release");
    if let Some(mut facts) = envfile::read_literal(&facts_file)? {
        facts.insert("LAST_LIVE".into(), now_secs().to_string());
        atomic::write_file(&facts_file, envfile::render(&facts)?.as_bytes(), 0o644)?;
    }
    output::step(format!("Release {} of '{app}' is live", rel.id));
    prune(root, app, &rel.id, previous.as_deref())
}

/// Keep the newest PIKU_KEEP_RELEASES (the app's setting, else the server's,
/// default 5, at most 50) releases, the live one and the one it replaces (its workers
/// drain): those `rollback` can go back to.
fn prune(root: &Root, app: &AppName, live: &str, draining: Option<&str>) -> Result<()> {
    let app_env = envfile::read_literal(&Release::open(root, app, live)?.fact_file("env"))?.unwrap_or_default();
    let value = std::env::var("PIKU_KEEP_RELEASES").ok().or_else(|| piku::settings::for_app(root, &app_env, "PIKU_KEEP_RELEASES").ok().flatten());
    // An app's value was checked when its config was resolved; a bad server
    // setting must not fail a deploy that is already live.
    let keep = piku::limits::keep_releases(value.as_deref()).unwrap_or_else(|e| {
        output::warn(format!("{}; keeping {}", e.message, piku::limits::MAX_KEEP_RELEASES));
        piku::limits::MAX_KEEP_RELEASES
    });
    let ids = release::list_ids(root, app);
    let dir = root.releases_dir(app);
    for id in ids.iter().take(ids.len().saturating_sub(keep)).filter(|id| id.as_str() != live && Some(id.as_str()) != draining) {
        let tree = dir.join(id);
        fs::remove_dir_all(&tree)?;
        // Its own fact; piku-build's and piku-config's go at their next run.
        atomic::remove_file(&dir.join(format!("{id}.release")))?;
    }
    Ok(())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn destroy(root: &Root, app: &AppName) -> Result<()> {
    let link = root.app_dir(app);
    if link.is_symlink() {
        atomic::remove_file(&link)?;
    } else if link.is_dir() {
        fs::remove_dir_all(&link)?;
    }
    for dir in [root.releases_dir(app), root.repo_dir(app)] {
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
    }
    Ok(())
}

/// pre-receive: parse the Procfile and ENV the deploy branch would get; an
/// error rejects the whole push before any ref moves.
fn verify(root: &Root, app: &AppName) -> Result<()> {
    let branch = deploy_branch(root, app)?;
    for line in ref_lines()? {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [_old, new, refname] = parts.as_slice() else { continue };
        let Some(name) = refname.strip_prefix("refs/heads/") else { continue };
        // The first branch pushed becomes the deploy branch.
        if *new == ZERO_ID || branch.as_deref().is_some_and(|b| b != name) {
            continue;
        }
        let reject = |e: Error| Error::new(format!("push to '{app}' rejected: {}; nothing was changed", e.message));
        // The tree the deploy would write: within PIKU_MAX_PUSH_MB too (a
        // small pack can hold a huge, well-compressed file).
        piku::limits::check_push_size(root, app.as_str(), tree_size(new)?).map_err(reject)?;
        // git cat-file sees the quarantined objects through git's environment.
        let show = |path: &str| -> Result<Option<String>> {
            let out = piku::limits::command_output(Command::new("git").args(["cat-file", "blob", &format!("{new}:{path}")]), &format!("the pushed {path}"))?;
            Ok(out.map(|o| String::from_utf8_lossy(&o).into_owned()))
        };
        if let Some(text) = show("Procfile").map_err(reject)? {
            piku::procfile::Procfile::parse(&text, "Procfile").map_err(reject)?;
        }
        if let Some(text) = show("ENV").map_err(reject)? {
            let mut env = Env::new();
            // Expanded as the deploy will (against the file itself), so a
            // value that grows past the limit (`A=$A$A`) is refused here too.
            envfile::parse_into(&mut env, &text, "ENV", true).map_err(reject)?;
        }
    }
    Ok(())
}

/// The "old new ref" lines git gives a hook on stdin (bounded).
fn ref_lines() -> Result<Vec<String>> {
    let input = piku::limits::read_stdin("the pushed refs")?;
    Ok(String::from_utf8_lossy(&input).lines().map(str::to_string).collect())
}

/// The total size of the files of `commit`'s tree, from `git ls-tree -r -l`.
fn tree_size(commit: &str) -> Result<u64> {
    let out = piku::limits::command_output(Command::new("git").args(["ls-tree", "-r", "-l", "--full-tree", commit]), "the pushed tree")?
        .ok_or_else(|| Error::new(format!("cannot list the tree of {commit}")))?;
    // `<mode> <type> <object> <size>\t<path>`; a submodule's size is `-`.
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split('\t').next()?.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum())
}
