//! Merging stored flists into a new one (`POST /api/flist/me/merge/<target>` and the
//! `/merge` form): first wins, directories merged, the result stamped with the hub's
//! backend. Bounded: at most `limits.max_merge_sources` names, each once, and
//! `limits.max_entries` entries met over all sources; the sources are read one directory
//! row at a time into a tree staged on disk. A request that times out or whose client goes
//! away cancels the merge and stores nothing.

use std::collections::HashSet;

use hub_repo::{names, Actor};
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::produce;
use crate::state::Shared;

/// Merges the flists `list` (`repo/name[.flist]`, first wins) into `actor.active/target`;
/// returns the sources as `repo/name.flist`.
pub(crate) async fn merge(
    st: &Shared,
    actor: &Actor,
    target: &str,
    list: &[String],
) -> ApiResult<Vec<String>> {
    names::validate_flist(target)?;
    actor.check_write(&actor.active)?;
    if list.is_empty() {
        return Err(ApiError::bad_request("nothing to merge"));
    }
    let sources = list
        .iter()
        .map(|s| crate::lookup::merge_source(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashSet::new();
    if let Some((r, n)) = sources.iter().find(|s| !seen.insert(*s)) {
        return Err(ApiError::bad_request(format!(
            "{r}/{n} is listed twice: name each flist once"
        )));
    }
    let max = st.config.limits.max_merge_sources;
    if sources.len() > max {
        return Err(ApiError::bad_request(format!(
            "{} flists given: at most {max} can be merged at once",
            sources.len()
        )));
    }
    // Names that resolve to the same content (links, copies) are merged once: a second
    // pass over the same tree changes nothing.
    let mut files = Vec::with_capacity(sources.len());
    let mut contents = HashSet::new();
    let viewer = crate::visibility::Viewer::of_actor(st, actor).await?;
    for (r, n) in &sources {
        let res = st.resolve_for(&viewer, r, n).await?;
        if contents.insert(res.sha256.clone()) {
            files.push((format!("{r}/{n}"), st.hub.catalog().blob_path(&res.sha256)));
        }
    }
    let names: Vec<String> = sources.iter().map(|(r, n)| format!("{r}/{n}")).collect();
    let shown = names.clone();
    let (guard, cancel) = produce::CancelOnDrop::new();
    let (st2, actor2, t2) = (st.clone(), actor.clone(), target.to_string());
    tokio::task::spawn_blocking(move || -> ApiResult<()> {
        let opts = produce::convert_options(&st2, &cancel);
        let read = flist_format::ReadOptions {
            temp_dir: Some(st2.hub.catalog().tmp_dir().to_path_buf()),
            ..Default::default()
        };
        let inputs: Vec<flist_convert::merge::Input<'_>> = files
            .iter()
            .map(|(what, path)| flist_convert::merge::Input { path, what })
            .collect();
        let merged = flist_convert::merge::merge(&inputs, &read, &opts)
            .map_err(|e| produce::refused("merge", e))?;
        let record = produce::Record {
            action: "merge",
            source: Some(names.join(", ")),
            detail: json!({ "sources": names }),
        };
        produce::store_converted(&st2, &actor2, &t2, merged, record, &cancel)
    })
    .await??;
    guard.disarm();
    Ok(shown)
}
