/* Directory listings of the native fast mount: OPENDIR, READDIR(PLUS), RELEASEDIR over a dirstream
 * (dirstream.h), attributes where they get used (habits.h), the next batch's reply built ahead. */
#ifndef BENCH_FASTMOUNT_LISTING_H
#define BENCH_FASTMOUNT_LISTING_H

#include "fastmount.h"

void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi);
void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi);
void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

#endif
